"""Is a new passphrase strong enough? One rule for the CLI and the app: ``check(passphrase, name)``.

The keystore's Argon2id slows each guess down, but a passphrase from the top of a cracking list falls anyway. A new
passphrase is accepted when it has at least :data:`MIN_LENGTH` characters and zxcvbn (Dropbox's estimator, the
``zxcvbn`` package) scores it at least :data:`MIN_SCORE` out of 4, counting the identity's name and the word
"komrade" as known to the attacker, with and without the spaces between its words (the weaker counts). The hint
is one sentence for a person, never the passphrase itself.

Only a passphrase being *chosen* is checked; opening an existing keystore accepts whatever opens it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

import zxcvbn as _zxcvbn

__all__ = ["MIN_LENGTH", "MIN_SCORE", "PassphraseCheck", "check"]

MIN_LENGTH = 10
MIN_SCORE = 3
# zxcvbn refuses longer input (its matching is quadratic); the first 72 characters are scored, a lower bound.
_ZXCVBN_MAX = 72
# zxcvbn keeps the user inputs in a module-level dictionary while it scores: one check at a time.
_lock = threading.Lock()
_SEPARATORS = re.compile(r"[\s._\-]+")


@dataclass(frozen=True)
class PassphraseCheck:
    ok: bool  # long enough and score >= MIN_SCORE
    score: int  # zxcvbn's 0 (guessable in seconds) .. 4 (very unguessable)
    hint: str  # one sentence for a person: why it is refused, or that it is fine


def check(passphrase: str, name: str = "") -> PassphraseCheck:
    """How strong ``passphrase`` is for an identity called ``name``; ``ok`` says whether to accept it."""
    if not isinstance(passphrase, str):
        raise TypeError("a passphrase must be a str")
    text = unicodedata.normalize("NFC", passphrase)  # as the keystore stores it
    length = len(text)
    if length == 0:
        return PassphraseCheck(False, 0, f"Choose a passphrase of at least {MIN_LENGTH} characters: "
                                         "a few uncommon words work well.")
    user_inputs = ["komrade", "komrade_dht"] + ([name] + name.split() if name else [])
    # zxcvbn prices a separator between two words as brute force ("hello world" scores 3, "helloworld" 1), so
    # the passphrase is also scored without its separators, and the weaker result counts.
    variants = [text, _SEPARATORS.sub("", text)]
    with _lock:
        result = min((_zxcvbn.zxcvbn(v[:_ZXCVBN_MAX], user_inputs=user_inputs) for v in variants if v),
                     key=lambda r: (r["score"], r["guesses"]))
    score = int(result["score"])
    if length < MIN_LENGTH:
        return PassphraseCheck(False, min(score, MIN_SCORE - 1),
                               f"Too short ({length} character{'s' if length > 1 else ''}): use at least {MIN_LENGTH}, "
                               "for example a few uncommon words.")
    if score < MIN_SCORE:
        feedback = result.get("feedback") or {}
        warning = (feedback.get("warning") or "").strip()
        suggestions = [s.strip() for s in feedback.get("suggestions") or [] if s.strip()]
        parts = ["Too easy to guess."]
        if warning:
            parts.append(warning if warning.endswith(".") else warning + ".")
        parts.append(suggestions[0] if suggestions else "Add another word or two; uncommon words are better.")
        return PassphraseCheck(False, score, " ".join(parts))
    return PassphraseCheck(True, score, "Strong enough." if score == MIN_SCORE else "Strong.")
