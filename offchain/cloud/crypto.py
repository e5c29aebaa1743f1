"""Keys and ciphers of MyFinancialCloud.

* **Root secret** of an investor's store, 32 bytes, from either
  - the investor's wallet signature of a fixed EIP-712 message (:func:`unlock_typed_data`):
    wallets sign deterministically (RFC 6979), so the same wallet always yields the same
    secret and nothing secret needs to be kept besides the wallet; or
  - a passphrase through scrypt (n = 2**15, r = 8, p = 1) with a random salt kept in the store.
* **Data keys** (AES-256-GCM) are derived from the root secret with HKDF-SHA256, one per key
  epoch: rotating the key on a revocation is moving to the next epoch.
* **Grants** wrap a data key to a grantee's secp256k1 public key with ECIES: ephemeral ECDH on
  secp256k1, HKDF-SHA256 over the shared secret, AES-256-GCM.

Every decryption failure raises :class:`DecryptionFailed`; nothing ever returns garbage.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import to_checksum_address

from offchain.errors import InvalidInput, LightPoolError

KEY_BYTES = 32
NONCE_BYTES = 12
SCRYPT_N = 2**15
UNLOCK_STATEMENT = (
    "Unlock my LightPool financial profile. Signing this reveals nothing and moves no funds."
)


class DecryptionFailed(LightPoolError):
    """A blob could not be opened: wrong key, or the data was modified or truncated."""


class WrongKey(DecryptionFailed):
    """The key offered (wallet signature or passphrase) is not the one the data was sealed with."""


def unlock_typed_data(investor: str) -> dict[str, Any]:
    """The fixed EIP-712 message whose signature unlocks ``investor``'s store.

    No chain id and no nonce on purpose: the same wallet must derive the same key on every
    chain and every day. Pass it to ``eth_signTypedData_v4`` or ``Account.sign_typed_data``.
    """
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
            ],
            "ProfileKey": [
                {"name": "statement", "type": "string"},
                {"name": "investor", "type": "address"},
            ],
        },
        "primaryType": "ProfileKey",
        "domain": {"name": "LightPool MyFinancialCloud", "version": "1"},
        "message": {"statement": UNLOCK_STATEMENT, "investor": to_checksum_address(investor)},
    }


def sign_unlock(private_key: bytes | str) -> bytes:
    """Sign the unlock message with a local private key; returns the 65-byte signature."""
    account = Account.from_key(private_key)
    signed = Account.sign_message(
        encode_typed_data(full_message=unlock_typed_data(account.address)), account.key
    )
    return bytes(signed.signature)


def root_from_signature(investor: str, signature: bytes) -> bytes:
    """The 32-byte root secret from the investor's signature of :func:`unlock_typed_data`.

    Raises :class:`InvalidInput` if the signature is malformed or was not made by
    ``investor`` (a signature by another wallet would silently derive another key).
    """
    if len(signature) != 65:
        raise InvalidInput("signature", "65 bytes (r || s || v)", f"{len(signature)} bytes")
    message = encode_typed_data(full_message=unlock_typed_data(investor))
    try:
        signer = Account.recover_message(message, signature=signature)
    except Exception as error:  # eth_keys raises several unrelated types on bad input
        raise InvalidInput("signature", "a valid secp256k1 signature", str(error)) from None
    if signer != to_checksum_address(investor):
        raise WrongKey(
            f"the unlock signature was made by {signer}, not by {to_checksum_address(investor)}"
        )
    # Only r || s: v is 0/1 or 27/28 depending on the wallet, and carries no entropy.
    return hkdf(signature[:64], b"lightpool/cloud/root/v1", salt=b"lightpool-wallet-signature")


def root_from_passphrase(passphrase: str, salt: bytes) -> bytes:
    """The 32-byte root secret from a passphrase (scrypt, 16-byte salt kept in the store)."""
    if not passphrase:
        raise InvalidInput("passphrase", "a non-empty passphrase")
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=8, p=1)
    return kdf.derive(passphrase.encode("utf-8"))


def hkdf(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 to 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(secret)


def data_key(root: bytes, epoch: int) -> bytes:
    """The AES-256 data key of key epoch ``epoch`` (>= 1)."""
    return hkdf(root, b"lightpool/cloud/data-key/v1/" + str(epoch).encode())


def key_check(root: bytes) -> str:
    """A public fingerprint of the root secret, so a wrong key is told apart from tampering."""
    return hkdf(root, b"lightpool/cloud/key-check/v1").hex()


def mac(root: bytes, payload: bytes) -> str:
    """HMAC-SHA256 of ``payload`` under a key derived from ``root`` (hex)."""
    return hmac.new(hkdf(root, b"lightpool/cloud/meta-mac/v1"), payload, hashlib.sha256).hexdigest()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM encrypt; returns ``(nonce, ciphertext_with_tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, what: str) -> bytes:
    """AES-256-GCM decrypt; raises :class:`DecryptionFailed` naming ``what`` on any failure."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionFailed(
            f"{what}: authentication failed - the key is wrong or the data was modified"
        ) from None


def public_key_of(private_key: bytes | str) -> bytes:
    """The 64-byte uncompressed secp256k1 public key (x || y) of an Ethereum private key."""
    raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else (
        private_key
    )
    return keys.PrivateKey(raw).public_key.to_bytes()


def address_of_public_key(public_key: bytes) -> str:
    """The checksummed Ethereum address of a 64-byte public key."""
    return keys.PublicKey(_public_key_64(public_key)).to_checksum_address()


def _public_key_64(public_key: bytes) -> bytes:
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise InvalidInput("public_key", "64 bytes (x || y) or 65 bytes starting 0x04",
                           f"{len(public_key)} bytes")
    return public_key


def _ecies_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return hkdf(shared, b"lightpool/cloud/ecies/v1" + ephemeral + recipient)


def ecies_encrypt(recipient_public_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt to a secp256k1 public key. Output: ``ephemeral(65) || nonce(12) || ct``.

    Raises :class:`InvalidInput` if the public key is malformed or not on the curve.
    """
    recipient = b"\x04" + _public_key_64(recipient_public_key)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), recipient)
    except ValueError:
        raise InvalidInput("public_key", "a point on secp256k1", recipient.hex()) from None
    ephemeral_key = ec.generate_private_key(ec.SECP256K1())
    ephemeral = ephemeral_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key = _ecies_key(ephemeral_key.exchange(ec.ECDH(), peer), ephemeral, recipient)
    nonce, ciphertext = seal(key, plaintext, aad)
    return ephemeral + nonce + ciphertext


def ecies_decrypt(private_key: bytes | str, blob: bytes, aad: bytes, what: str) -> bytes:
    """Decrypt an :func:`ecies_encrypt` blob with the recipient's Ethereum private key.

    Raises :class:`DecryptionFailed` if the key is not the recipient's or the blob changed.
    """
    raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else (
        private_key
    )
    if len(blob) < 65 + NONCE_BYTES + 16:
        raise DecryptionFailed(f"{what}: truncated")
    ephemeral, nonce, ciphertext = blob[:65], blob[65 : 65 + NONCE_BYTES], blob[65 + NONCE_BYTES :]
    own = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256K1())
    recipient = own.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), ephemeral)
    except ValueError:
        raise DecryptionFailed(f"{what}: malformed ephemeral key") from None
    key = _ecies_key(own.exchange(ec.ECDH(), peer), ephemeral, recipient)
    return open_sealed(key, nonce, ciphertext, aad, what)
