//! `firebreak key new`: issue a virtual key and print the policy entry holding only its hash.

use std::process::ExitCode;

use sha2::{Digest, Sha256};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Generate a new random key (printed once) and its `[[keys]]` entry.
    New {
        /// Key id (safe to log; used by `revoke_key`).
        #[arg(long)]
        id: String,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// User.
        #[arg(long)]
        user: String,
        /// Role.
        #[arg(long)]
        role: String,
    },
    /// Print the SHA-256 of a key read from standard input.
    Hash,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Cmd::New { id, tenant, user, role } => {
            let bytes: [u8; 24] = rand::random();
            let key = format!("fbk_{}", hex::encode(bytes));
            let digest = hex::encode(Sha256::digest(key.as_bytes()));
            eprintln!("key (shown once; hand it to the client): {key}");
            println!(
                "[[keys]]\nid = {id:?}\nsha256 = \"{digest}\"\ntenant = {tenant:?}\nuser = {user:?}\nrole = {role:?}"
            );
        }
        Cmd::Hash => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s)?;
            println!("{}", hex::encode(Sha256::digest(s.trim().as_bytes())));
        }
    }
    Ok(ExitCode::SUCCESS)
}
