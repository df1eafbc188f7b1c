/*
 * Sealing datagrams with the shared key (docs/protocol.md, "Sealed
 * datagrams"): XChaCha20-Poly1305 from libsodium, the 24-byte header as
 * associated data, and a nonce made of the sender id and the sequence
 * number, which never repeat under one key.
 */
#include <sodium.h>
#include <string.h>

#include "net/net.h"
#include "net/wire.h"

_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == MBX__WIRE_TAG,
               "the tag is 16 bytes");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32,
               "the key is 32 bytes");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24,
               "the nonce is 24 bytes");

int
mbx__net_crypto_init(void)
{
    return sodium_init() < 0 ? MBX_ENOMEM : 0;
}

/* The nonce of a datagram: its sender id and sequence bytes (header bytes
 * 4..20), then 8 zero bytes. */
static void
nonce_of(const uint8_t *dgram, uint8_t nonce[24])
{
    memcpy(nonce, dgram + 4, 16);
    memset(nonce + 16, 0, 8);
}

size_t
mbx__net_seal(const uint8_t key[32], uint8_t *dgram, size_t len)
{
    uint8_t nonce[24];
    nonce_of(dgram, nonce);
    unsigned long long out_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        dgram + MBX__WIRE_HEADER, &out_len, dgram + MBX__WIRE_HEADER,
        len - MBX__WIRE_HEADER, dgram, MBX__WIRE_HEADER, NULL, nonce, key);
    return MBX__WIRE_HEADER + (size_t)out_len;
}

int
mbx__net_open(const uint8_t key[32], uint8_t *dgram, size_t len,
              size_t *plain_len)
{
    if (len < MBX__WIRE_HEADER + MBX__WIRE_TAG)
        return MBX_EBADMSG;
    uint8_t nonce[24];
    nonce_of(dgram, nonce);
    unsigned long long out_len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            dgram + MBX__WIRE_HEADER, &out_len, NULL, dgram + MBX__WIRE_HEADER,
            len - MBX__WIRE_HEADER, dgram, MBX__WIRE_HEADER, nonce, key) != 0)
        return MBX_EBADMSG;
    *plain_len = MBX__WIRE_HEADER + (size_t)out_len;
    return 0;
}
