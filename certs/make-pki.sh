#!/bin/sh
# Makes a throw-away local PKI for TLS on firebreak's own listeners (tests and the demo):
# a CA, server certificates for 127.0.0.1/::1/localhost, and client certificates for mutual TLS.
#
#   sh certs/make-pki.sh DIR        # DIR is created if needed; default: certs/local (git-ignored)
#
# Nothing it makes is committed: every run makes fresh keys, so no test depends on a committed key
# or on a date. Needs the openssl CLI (1.1.1 or 3.x). Private keys are written 0600.
#
# DIR/ca.pem, ca.key                  the local CA (trust ca.pem in clients; client_ca_file for mTLS)
# DIR/server.pem, server.key          server certificate: IP:127.0.0.1, IP:::1, DNS:localhost
# DIR/server2.pem, server2.key        a second one (another key and serial), to try a reload
# DIR/server-expired.pem, .key        an expired server certificate
# DIR/client-alice.pem, .key          client certificate: CN=alice, SAN email alice@example.test,
#                                     DNS alice.ops.example.test, URI spiffe://example.test/admin/alice
# DIR/client-bob.pem, .key            client certificate: CN=bob (bob@example.test, ...)
# DIR/client-expired.pem, .key        client certificate CN=carol from the CA, expired
# DIR/other-ca.pem, other-ca.key      an unrelated CA
# DIR/client-wrong-ca.pem, .key       client certificate CN=mallory, signed by the unrelated CA
set -eu

DIR=${1:-"$(dirname "$0")/local"}
DAYS=${DAYS:-30}
mkdir -p "$DIR"
cd "$DIR"
umask 077
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

serial() { echo "0x$(openssl rand -hex 12)"; }

# A CA: self-signed, EC P-256.  ca NAME CN
ca() {
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.pem" -days "$DAYS" -sha256 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# A leaf certificate signed by a CA.  leaf NAME CA SUBJECT EXTENSIONS [expired]
leaf() {
  name=$1 signer=$2 subj=$3 ext=$4 expired=${5:-}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name.key" -out "$TMP/$name.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "authorityKeyIdentifier=keyid" "subjectKeyIdentifier=hash" "$ext" > "$TMP/$name.ext"
  if [ -z "$expired" ]; then
    openssl x509 -req -in "$TMP/$name.csr" -CA "$signer.pem" -CAkey "$signer.key" -set_serial "$(serial)" \
      -out "$name.pem" -days "$DAYS" -sha256 -extfile "$TMP/$name.ext" 2>/dev/null
  else
    # `openssl x509` cannot back-date; `openssl ca` can (valid for one day, two years ago).
    mkdir -p "$TMP/db"
    : > "$TMP/db/index.txt"
    cat > "$TMP/ca.cnf" <<EOF
[ca]
default_ca = local
[local]
database = $TMP/db/index.txt
new_certs_dir = $TMP/db
serial = $TMP/db/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
EOF
    openssl ca -batch -config "$TMP/ca.cnf" -cert "$signer.pem" -keyfile "$signer.key" \
      -in "$TMP/$name.csr" -out "$name.pem" -notext -extfile "$TMP/$name.ext" -create_serial \
      -startdate "$(date -u -d '2 years ago' +%Y%m%d%H%M%SZ 2>/dev/null || date -u -v-2y +%Y%m%d%H%M%SZ)" \
      -enddate "$(date -u -d '2 years ago + 1 day' +%Y%m%d%H%M%SZ 2>/dev/null || date -u -v-2y -v+1d +%Y%m%d%H%M%SZ)" \
      2>/dev/null
  fi
  # rustls reads PKCS#8 (and SEC1); convert so every openssl version gives the same format.
  openssl pkcs8 -topk8 -nocrypt -in "$name.key" -out "$TMP/$name.pk8"
  mv "$TMP/$name.pk8" "$name.key"
}

SERVER="extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
client() { printf '%s\n' "extendedKeyUsage=clientAuth" \
  "subjectAltName=email:$1@example.test,DNS:$1.ops.example.test,URI:spiffe://example.test/admin/$1"; }

ca ca "firebreak local CA (TEST ONLY)"
ca other-ca "an unrelated CA (TEST ONLY)"
leaf server ca "/CN=localhost" "$SERVER"
leaf server2 ca "/CN=localhost" "$SERVER"
leaf server-expired ca "/CN=localhost" "$SERVER" expired
leaf client-alice ca "/CN=alice" "$(client alice)"
leaf client-bob ca "/CN=bob" "$(client bob)"
leaf client-expired ca "/CN=carol" "$(client carol)" expired
leaf client-wrong-ca other-ca "/CN=mallory" "$(client mallory)"

chmod 644 ./*.pem
openssl verify -CAfile ca.pem server.pem server2.pem client-alice.pem client-bob.pem >/dev/null
echo "local PKI in $(pwd): ca.pem, server.pem/server.key, client-alice.pem/client-alice.key, ..."
