//! Fleet commands (credential rotation, reload) issued on one replica and run by every replica.
