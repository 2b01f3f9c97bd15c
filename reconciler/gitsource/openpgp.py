"""GPG (OpenPGP) commit signatures, for a `--verify-signatures` file that is a public keyring rather than an ssh
allowed-signers file.

The keyring is the allow-list: its keys are imported into a GnuPG home of the source's own (in its 0700 state
directory, made anew each start so a key taken out of the file is gone), and `git verify-commit` runs with that
home, never the user's `~/.gnupg`. A good signature by any key in it is accepted whatever GnuPG's web-of-trust
says (importing a key here is the trust decision); an expired or revoked key, a bad signature, or a key that is
not in the file is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reconciler.gitsource.errors import SourceInvalid

ARMOR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
GPG = "gpg"
TIMEOUT = 30.0

# `[GNUPG:] KEYWORD` status lines of `gpg --verify`, as git passes them on with `verify-commit --raw`.
REFUSALS = {
    "NO_PUBKEY": "its key is not in the keyring",
    "BADSIG": "the signature does not verify",
    "EXPKEYSIG": "its key has expired",
    "EXPSIG": "the signature has expired",
    "REVKEYSIG": "its key has been revoked",
}


def is_keyring(path: Path) -> bool:
    """An OpenPGP public key file: ASCII-armoured, or binary starting with a public-key packet (tag 6, old or new
    packet format). Anything else is taken for an ssh allowed-signers file."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if ARMOR in head:
        return True
    return bool(head) and (head[0] & 0xFC == 0x98 or head[0] == 0xC6)


class Keyring:
    """The keys of `path`, imported into the GnuPG home `home` (replaced)."""

    def __init__(self, path: Path, home: Path) -> None:
        if shutil.which(GPG) is None:
            raise SourceInvalid(f"{path}: an OpenPGP keyring needs gpg, which is not installed")
        self.home = home
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(mode=0o700, parents=True)
        # The keyring is the allow-list: every key in it is trusted to sign, whoever certified it.
        (home / "gpg.conf").write_text("trust-model always\nno-autostart\n")
        imported = self._gpg("--import", str(path))
        listed = self._gpg("--with-colons", "--list-keys")
        if not any(line.startswith("pub:") for line in listed.stdout.splitlines()):
            why = imported.stderr.strip().splitlines()[-1:] or ["no public key in it"]
            raise SourceInvalid(f"{path}: not a usable OpenPGP keyring: {why[0]}")

    @property
    def environment(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    @staticmethod
    def config() -> list[str]:
        """`git -c` arguments that let verify-commit use gpg (the source's defaults set every signing program to
        `false`); `-c` wins over those."""
        return ["-c", "gpg.program=gpg", "-c", "gpg.openpgp.program=gpg"]

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [GPG, "--batch", "--no-tty", "--homedir", str(self.home), *args],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceInvalid(f"cannot run gpg: {exc}") from exc


def refusal(status: str) -> str:
    """Why `git verify-commit --raw` refused a commit, from the status lines it printed."""
    keywords = {
        line.split()[1] for line in status.splitlines() if line.startswith("[GNUPG:] ") and len(line.split()) > 1
    }
    for keyword, why in REFUSALS.items():
        if keyword in keywords:
            return why
    return "the signature does not verify"
