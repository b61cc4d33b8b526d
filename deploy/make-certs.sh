#!/usr/bin/env sh
# Certificates for mutual TLS between Temporal and its clients (docker-compose.temporal.yml).
#
#   deploy/make-certs.sh [DIR]          (default: deploy/certs; needs openssl)
#
# Makes a private CA and, signed by it:
#   temporal.pem/.key     the Temporal server (frontend and internode), names temporal, localhost
#   settle.pem/.key       Settle's API and worker (TEMPORAL_TLS_CLIENT_CERT_PATH/_KEY_PATH)
#   temporal-ui.pem/.key  the Web UI's connection to the frontend
#   operator.pem/.key     admin tools and the temporal CLI
# The server requires a client certificate from this CA: without one, nobody reaches gRPC, even
# from inside the compose network. Keys are written 0600: give the containers read access the
# way your host does it (owner uid, group, or Docker secrets); never commit them (.gitignore).
# Existing files are kept; delete the folder to make new ones (then restart every service).
set -eu

DIR=${1:-deploy/certs}
DAYS=${CERT_DAYS:-825}
mkdir -p "$DIR"
cd "$DIR"
umask 077

if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey rsa:4096 -sha256 -nodes -days "$DAYS" \
    -keyout ca.key -out ca.pem -subj "/CN=Settle Temporal CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

leaf() {
  name=$1 names=$2 usage=$3
  [ -f "$name.pem" ] && return 0
  openssl req -newkey rsa:2048 -sha256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=$usage" \
    "subjectAltName=$names" > "$name.ext"
  openssl x509 -req -sha256 -days "$DAYS" -in "$name.csr" -CA ca.pem -CAkey ca.key \
    -CAcreateserial -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# the server presents temporal.pem to clients and to its own nodes (internode is mutual too)
leaf temporal "DNS:temporal,DNS:localhost,IP:127.0.0.1" "serverAuth,clientAuth"
leaf settle "DNS:settle" "clientAuth"
leaf temporal-ui "DNS:temporal-ui" "clientAuth"
leaf operator "DNS:operator" "clientAuth"

chmod 0644 ./*.pem
chmod 0600 ./*.key
echo "certificates in $(pwd): ca.pem, temporal.pem, settle.pem, temporal-ui.pem, operator.pem (+ .key)"
