"""The encrypted, versioned store of an investor's profile and wealth plans.

Layout under the store's root (a local folder by default, any fsspec URL otherwise)::

    <root>/<investor>/meta.json                   key epoch, KDF, grants; MAC-protected
    <root>/<investor>/profile/v000001.json         sealed version 1 (never overwritten)
    <root>/<investor>/plan/v000001.json            sealed wealth plan version 1
    <root>/<investor>/grants/<grantee>.e<k>.json   data key of epoch k wrapped to a grantee

A sealed version is AES-256-GCM under the data key of the epoch it was written in; its header
(investor, kind, version, epoch) is the associated data, so moving or relabelling a blob makes
it fail to open. Every file is written to a temporary name and then moved into place, and
every input is validated before the first byte is written: a failure leaves nothing behind.

Sharing: :meth:`Vault.grant` wraps the current epoch's data key to the grantee's secp256k1
public key (ECIES) for an on-chain consent scope and expiry (the same values the investor
passes to ``ProfileRegistry.grant_consent``). :meth:`Vault.revoke` moves to a new epoch and
re-wraps the new key for the remaining grantees only, so the revoked grantee cannot open any
version written afterwards (versions it could read before stay readable to it: a key once
shared cannot be unshared).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel

from offchain.cloud import crypto
from offchain.cloud.profile import (
    Profile,
    canonical_bytes,
    canonical_json,
    commitment_of,
    new_salt,
    parse_profile,
)
from offchain.config import get_settings
from offchain.errors import InvalidInput, LightPoolError

WrongKey = crypto.WrongKey

FORMAT = "lightpool.sealed/1"
META_FORMAT = "lightpool.vault/1"
# keccak256("profile"): the consent scope a profile grant stands for on chain.
PROFILE_SCOPE = keccak(text="profile")


class AccessDenied(LightPoolError):
    """The caller holds no valid grant (or no on-chain consent) for what it tried to open."""


class NotFound(LightPoolError):
    """No such investor, version or grant in the store."""


@dataclass(frozen=True)
class WalletUnlock:
    """Unlock with the 65-byte signature of :func:`crypto.unlock_typed_data`."""

    signature: bytes

    @classmethod
    def from_private_key(cls, private_key: bytes | str) -> WalletUnlock:
        """Sign the fixed unlock message with a local key (tests, CLI with a dev key)."""
        return cls(crypto.sign_unlock(private_key))


@dataclass(frozen=True)
class PassphraseUnlock:
    """Unlock with a passphrase (scrypt)."""

    passphrase: str


Unlock = WalletUnlock | PassphraseUnlock


@dataclass(frozen=True)
class RevealedProfile:
    """A decrypted profile version: the document, its exact canonical bytes and salt."""

    profile: Profile
    canonical: bytes
    salt: bytes
    version: int

    @property
    def commitment(self) -> bytes:
        """``keccak256(canonical || salt)``, the value committed on chain."""
        return commitment_of(self.canonical, self.salt)


@dataclass(frozen=True)
class Grant:
    """Access granted to ``grantee`` for ``scope`` until ``expiry`` (unix seconds)."""

    grantee: str
    public_key: bytes
    scope: bytes
    expiry: int
    granted_at: int


def default_store_url() -> str:
    """``<LIGHTPOOL_DATA_DIR>/profiles``."""
    return get_settings().data_dir.rstrip("/") + "/profiles"


class ProfileStore:
    """All investors' vaults under one fsspec URL (default :func:`default_store_url`)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_store_url()
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _dir(self, investor: str) -> str:
        return f"{self.root}/{to_checksum_address(investor)}"

    def exists(self, investor: str) -> bool:
        """Whether ``investor`` has a vault here."""
        return self.fs.exists(f"{self._dir(investor)}/meta.json")

    def vault(self, investor: str, unlock: Unlock) -> Vault:
        """Open ``investor``'s vault, or prepare a new one (written on the first save).

        Raises :class:`WrongKey` if ``unlock`` is not the key the vault was made with and
        :class:`crypto.DecryptionFailed` if its metadata was modified.
        """
        investor = _address("investor", investor)
        meta = (self._read_json(f"{self._dir(investor)}/meta.json") if self.exists(investor)
                else None)
        if meta is None:
            kdf = {"kind": "wallet", "salt": None}
            if isinstance(unlock, PassphraseUnlock):
                kdf = {"kind": "passphrase", "salt": os.urandom(16).hex()}
            root = _root_secret(investor, unlock, kdf)
            meta = {
                "format": META_FORMAT,
                "investor": investor,
                "kdf": kdf,
                "key_check": crypto.key_check(root),
                "epoch": 1,
                "grants": [],
            }
            return Vault(self, investor, root, meta, persisted=False)
        root = _root_secret(investor, unlock, meta.get("kdf", {}))
        if meta.get("key_check") != crypto.key_check(root):
            raise WrongKey(
                f"{investor}: this {_kind(unlock)} does not open the vault "
                f"(it was created with a {meta.get('kdf', {}).get('kind', '?')} key)"
            )
        body = {k: v for k, v in meta.items() if k != "mac"}
        if meta.get("mac") != crypto.mac(root, canonical_json(body)):
            raise crypto.DecryptionFailed(f"{investor}/meta.json: modified (MAC mismatch)")
        return Vault(self, investor, root, body, persisted=True)

    def versions(self, investor: str, kind: str = "profile") -> list[int]:
        """Version numbers of ``kind`` stored for ``investor``, ascending (no key needed)."""
        folder = f"{self._dir(investor)}/{kind}"
        if not self.fs.exists(folder):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        return sorted(int(n[1:7]) for n in names if n.startswith("v") and n.endswith(".json"))

    def open_shared(
        self,
        investor: str,
        grantee_private_key: bytes | str,
        version: int | None = None,
        consent: Callable[[str, str, bytes], bool] | None = None,
    ) -> RevealedProfile:
        """Open a profile version as a grantee, with the grantee's own private key.

        ``consent(investor, grantee, scope)`` (e.g. ``ProfileRegistry.has_consent``) is asked
        first when given. Raises :class:`AccessDenied` when there is no grant for the epoch
        the version was written in, or no consent on chain; :class:`crypto.DecryptionFailed`
        if the key is not the grantee's or a file was modified.
        """
        investor = _address("investor", investor)
        grantee = crypto.address_of_public_key(crypto.public_key_of(grantee_private_key))
        version = version or self._latest(investor, "profile")
        envelope = self._read_envelope(investor, "profile", version)
        epoch = int(envelope["epoch"])
        path = f"{self._dir(investor)}/grants/{grantee}.e{epoch}.json"
        if not self.fs.exists(path):
            raise AccessDenied(
                f"{grantee} holds no grant for {investor}'s profile v{version} (key epoch {epoch})"
            )
        wrapped = self._read_json(path)
        scope = bytes.fromhex(wrapped["scope"])
        if int(wrapped["expiry"]) <= int(time.time()):
            raise AccessDenied(f"{grantee}'s grant from {investor} expired")
        if consent is not None and not consent(investor, grantee, scope):
            raise AccessDenied(f"{grantee} has no on-chain consent from {investor}")
        key = crypto.ecies_decrypt(
            grantee_private_key,
            bytes.fromhex(wrapped["wrapped"]),
            _grant_aad(investor, grantee, epoch, scope),
            f"grant {grantee}.e{epoch}",
        )
        return _reveal(_open_envelope(key, envelope), version)

    def _latest(self, investor: str, kind: str) -> int:
        versions = self.versions(investor, kind)
        if not versions:
            raise NotFound(f"{investor} has no {kind} in {self.url}")
        return versions[-1]

    def _read_json(self, path: str) -> dict[str, Any]:
        try:
            with self.fs.open(path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except ValueError:
            raise crypto.DecryptionFailed(
                f"{path}: not valid JSON (modified or truncated)") from None
        if not isinstance(data, dict):
            raise crypto.DecryptionFailed(f"{path}: not a JSON object (modified)")
        return data

    def _read_envelope(self, investor: str, kind: str, version: int) -> dict[str, Any]:
        path = f"{self._dir(investor)}/{kind}/v{version:06d}.json"
        if not self.fs.exists(path):
            raise NotFound(f"{investor} has no {kind} version {version}")
        envelope = self._read_json(path)
        expected = {"format": FORMAT, "investor": investor, "kind": kind, "version": version}
        for field, value in expected.items():
            if envelope.get(field) != value:
                raise crypto.DecryptionFailed(f"{path}: header field {field!r} was modified")
        return envelope

    def _write_atomic(self, path: str, payload: bytes, overwrite: bool) -> None:
        if not overwrite and self.fs.exists(path):
            raise LightPoolError(f"{path}: already exists; versions are never overwritten")
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(temporary, payload)
        try:
            self.fs.mv(temporary, path)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)


class Vault:
    """One investor's unlocked vault. Obtain it from :meth:`ProfileStore.vault`."""

    def __init__(
        self, store: ProfileStore, investor: str, root: bytes, meta: dict[str, Any], persisted: bool
    ) -> None:
        self.store = store
        self.investor = investor
        self._root = root
        self._meta = meta
        self._persisted = persisted

    @property
    def epoch(self) -> int:
        """The current key epoch (bumped by each revocation)."""
        return int(self._meta["epoch"])

    def versions(self, kind: str = "profile") -> list[int]:
        """Stored version numbers of ``kind`` ("profile" or "plan"), ascending."""
        return self.store.versions(self.investor, kind)

    def save_profile(self, data: Profile | dict[str, Any] | str | bytes) -> RevealedProfile:
        """Validate and store a new profile version with a fresh salt.

        Raises :class:`InvalidInput` (nothing written) if ``data`` is malformed or belongs to
        another investor. Returns the revealed version (with its commitment).
        """
        profile = data if isinstance(data, Profile) else parse_profile(
            data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else data
        )
        if profile.investor != self.investor:
            raise InvalidInput("profile.investor", f"the vault owner {self.investor}",
                               profile.investor)
        canonical = canonical_bytes(profile)
        salt = new_salt()
        plaintext = canonical_json({"canonical": canonical.decode("utf-8"), "salt": salt.hex()})
        version = self._write_version("profile", plaintext)
        return RevealedProfile(profile, canonical, salt, version)

    def load_profile(self, version: int | None = None) -> RevealedProfile:
        """Decrypt a profile version (latest by default).

        Raises :class:`NotFound` if absent and :class:`crypto.DecryptionFailed` if modified.
        """
        version = version or self.store._latest(self.investor, "profile")
        return _reveal(self._read_version("profile", version), version)

    def save_document(self, kind: str, document: dict[str, Any]) -> int:
        """Store a new version of another sealed document (e.g. a wealth plan); returns it."""
        if kind not in ("plan",):
            raise InvalidInput("kind", "'plan'", kind)
        return self._write_version(kind, canonical_json(document))

    def load_document(self, kind: str, version: int | None = None) -> dict[str, Any]:
        """Decrypt a stored document version (latest by default)."""
        version = version or self.store._latest(self.investor, kind)
        return json.loads(self._read_version(kind, version))

    def grants(self) -> list[Grant]:
        """The grants in force (including expired ones not yet revoked)."""
        return [
            Grant(g["grantee"], bytes.fromhex(g["public_key"]), bytes.fromhex(g["scope"]),
                  int(g["expiry"]), int(g["granted_at"]))
            for g in self._meta["grants"]
        ]

    def grant(
        self, grantee_public_key: bytes, expiry: int, scope: bytes = PROFILE_SCOPE
    ) -> Grant:
        """Share the current key epoch with the holder of ``grantee_public_key`` (64 bytes).

        ``scope`` (32 bytes) and ``expiry`` (unix seconds) should equal the on-chain
        ``grant_consent(grantee, scope, expiry)``. Raises :class:`InvalidInput` on a malformed
        key, scope or an expiry in the past (nothing written).
        """
        grantee = crypto.address_of_public_key(grantee_public_key)
        if grantee == self.investor:
            raise InvalidInput("grantee", "an address other than the investor", grantee)
        if len(scope) != 32:
            raise InvalidInput("scope", "32 bytes", f"{len(scope)} bytes")
        now = int(time.time())
        if expiry <= now:
            raise InvalidInput("expiry", f"unix seconds after now ({now})", expiry)
        record = {
            "grantee": grantee,
            "public_key": crypto._public_key_64(grantee_public_key).hex(),
            "scope": scope.hex(),
            "expiry": expiry,
            "granted_at": now,
        }
        grants = [g for g in self._meta["grants"] if g["grantee"] != grantee] + [record]
        self._wrap_for(record, self.epoch)
        self._meta = {**self._meta, "grants": grants}
        self._save_meta()
        return self.grants()[-1]

    def revoke(self, grantee: str) -> int:
        """Revoke ``grantee``: rotate to a new key epoch, re-wrap it for the others only.

        Returns the new epoch. Raises :class:`NotFound` if ``grantee`` holds no grant.
        """
        grantee = _address("grantee", grantee)
        if not any(g["grantee"] == grantee for g in self._meta["grants"]):
            raise NotFound(f"{grantee} holds no grant from {self.investor}")
        remaining = [g for g in self._meta["grants"] if g["grantee"] != grantee]
        new_epoch = self.epoch + 1
        for record in remaining:
            self._wrap_for(record, new_epoch)
        self._meta = {**self._meta, "epoch": new_epoch, "grants": remaining}
        self._save_meta()
        folder = f"{self.store._dir(self.investor)}/grants"
        for path in self.store.fs.glob(f"{folder}/{grantee}.e*.json"):
            self.store.fs.rm(path)
        return new_epoch

    def _wrap_for(self, record: dict[str, Any], epoch: int) -> None:
        scope = bytes.fromhex(record["scope"])
        wrapped = crypto.ecies_encrypt(
            bytes.fromhex(record["public_key"]),
            crypto.data_key(self._root, epoch),
            _grant_aad(self.investor, record["grantee"], epoch, scope),
        )
        body = {"grantee": record["grantee"], "epoch": epoch, "scope": record["scope"],
                "expiry": record["expiry"], "wrapped": wrapped.hex()}
        path = f"{self.store._dir(self.investor)}/grants/{record['grantee']}.e{epoch}.json"
        self.store._write_atomic(path, canonical_json(body), overwrite=True)

    def _save_meta(self) -> None:
        body = {k: v for k, v in self._meta.items() if k != "mac"}
        signed = {**body, "mac": crypto.mac(self._root, canonical_json(body))}
        path = f"{self.store._dir(self.investor)}/meta.json"
        self.store._write_atomic(path, canonical_json(signed), overwrite=True)
        self._persisted = True

    def _write_version(self, kind: str, plaintext: bytes) -> int:
        existing = self.versions(kind)
        version = (existing[-1] if existing else 0) + 1
        header = {"format": FORMAT, "investor": self.investor, "kind": kind,
                  "version": version, "epoch": self.epoch}
        nonce, ciphertext = crypto.seal(
            crypto.data_key(self._root, self.epoch), plaintext, canonical_json(header)
        )
        envelope = {**header, "nonce": nonce.hex(), "ciphertext": ciphertext.hex(),
                    "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        if not self._persisted:
            self._save_meta()
        path = f"{self.store._dir(self.investor)}/{kind}/v{version:06d}.json"
        self.store._write_atomic(path, canonical_json(envelope), overwrite=False)
        return version

    def _read_version(self, kind: str, version: int) -> bytes:
        envelope = self.store._read_envelope(self.investor, kind, version)
        epoch = int(envelope["epoch"])
        if not 1 <= epoch <= self.epoch:
            raise crypto.DecryptionFailed(f"{kind} v{version}: key epoch {epoch} was modified")
        return _open_envelope(crypto.data_key(self._root, epoch), envelope)


def _open_envelope(key: bytes, envelope: dict[str, Any]) -> bytes:
    header = {k: envelope.get(k) for k in ("format", "investor", "kind", "version", "epoch")}
    what = f"{header['investor']}/{header['kind']} v{header['version']}"
    try:
        nonce = bytes.fromhex(envelope["nonce"])
        ciphertext = bytes.fromhex(envelope["ciphertext"])
    except (KeyError, TypeError, ValueError):
        raise crypto.DecryptionFailed(f"{what}: malformed envelope (modified)") from None
    return crypto.open_sealed(key, nonce, ciphertext, canonical_json(header), what)


def _reveal(plaintext: bytes, version: int) -> RevealedProfile:
    body = json.loads(plaintext)
    canonical = body["canonical"].encode("utf-8")
    return RevealedProfile(parse_profile(canonical), canonical, bytes.fromhex(body["salt"]),
                           version)


def _grant_aad(investor: str, grantee: str, epoch: int, scope: bytes) -> bytes:
    return f"lightpool/grant/v1|{investor}|{grantee}|{epoch}|{scope.hex()}".encode()


def _root_secret(investor: str, unlock: Unlock, kdf: dict[str, Any]) -> bytes:
    kind = kdf.get("kind")
    if isinstance(unlock, WalletUnlock):
        if kind != "wallet":
            raise WrongKey(f"{investor}: the vault is opened with a {kind}, not a wallet")
        return crypto.root_from_signature(investor, unlock.signature)
    if kind != "passphrase":
        raise WrongKey(f"{investor}: the vault is opened with a {kind}, not a passphrase")
    return crypto.root_from_passphrase(unlock.passphrase, bytes.fromhex(kdf["salt"]))


def _kind(unlock: Unlock) -> str:
    return "wallet signature" if isinstance(unlock, WalletUnlock) else "passphrase"


def _address(field: str, value: str) -> str:
    try:
        return to_checksum_address(value)
    except (ValueError, TypeError):
        raise InvalidInput(field, "a 20-byte hex address (0x...)", value) from None
