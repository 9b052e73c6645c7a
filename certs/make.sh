#!/bin/sh
# Regenerates the DEVELOPMENT CA and server certificate in this directory.
# TEST-ONLY material: the private keys are committed on purpose. Never trust ca.pem outside tests.
set -eu
cd "$(dirname "$0")"

DAYS=3650

# 1. The development CA: a self-signed root with an EC P-256 key.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days "$DAYS" -sha256 \
  -subj "/CN=firebreak development CA (TEST ONLY)" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

# 2. The server key and a certificate signing request.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out server.csr \
  -subj "/CN=localhost"

# 3. The server certificate, signed by the CA, valid for 127.0.0.1, ::1 and localhost.
cat > server.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.pem -days "$DAYS" -sha256 -extfile server.ext

# rustls reads PKCS#8 keys; convert explicitly so every openssl version gives the same format.
openssl pkcs8 -topk8 -nocrypt -in server.key -out server.key.pk8 && mv server.key.pk8 server.key
openssl pkcs8 -topk8 -nocrypt -in ca.key -out ca.key.pk8 && mv ca.key.pk8 ca.key

rm -f server.csr server.ext ca.srl
# Test-only keys, committed on purpose: readable so CI users other than the author can load them.
chmod 644 ca.key server.key
openssl verify -CAfile ca.pem server.pem
