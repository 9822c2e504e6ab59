#!/usr/bin/env bash
# Throw-away TLS material for the test servers, made with the openssl CLI.
#
#   make_certs.sh DIR    writes into DIR (created if missing):
#     ca.crt              a self-signed CA (the one tests trust)
#     server.crt/.key     a server certificate signed by it, valid for
#                         IP 127.0.0.1 and DNS localhost (key mode 0600)
#     wrong-ca.crt        a second, unrelated CA: trusting it instead of
#                         ca.crt must make verification fail
#
# P-256 keys: a handshake costs far less CPU than with RSA, which matters on
# a shared machine where every suite's connections may go through TLS.
# Valid for 2 days: the material lives as long as one test run.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || {
    echo "make_certs: openssl not found; install it with: apt-get install -y openssl" >&2
    exit 1
}
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077

# CA NAME BASENAME: a self-signed CA certificate and its key.
make_ca() {
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$2.key" -out "$2.crt" -days 2 -subj "/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

{
    make_ca "shardroute test CA" ca
    make_ca "shardroute unrelated CA" wrong-ca
    rm -f wrong-ca.key
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext ca.srl
} || { echo "make_certs: openssl failed in $dir" >&2; exit 1; }
# Certificates are public; the keys stay 0600 (PostgreSQL insists on it).
chmod 644 ca.crt wrong-ca.crt server.crt
openssl verify -CAfile ca.crt server.crt >/dev/null ||
    { echo "make_certs: the server certificate does not verify" >&2; exit 1; }
