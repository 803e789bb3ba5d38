"""Can this machine fetch a model from the Hugging Face Hub? Asked before any long download.

The kit's GPU default, ``meta-llama/Llama-3.2-1B-Instruct``, is gated: its licence must be accepted
on the Hub and a token (``HF_TOKEN``: a Colab secret or the environment) must be given. Without
them a notebook would install and download for minutes and then fail inside the loader, so
``check_model_access`` stops first with the exact steps. The embedded model and local folders
need nothing; offline (``HF_HUB_OFFLINE=1``) the Hub is never asked and only known gated owners
(``GATED_PREFIXES``) without a token are stopped; online the Hub says whether a repository is
gated and whether the token may read it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

GATED_PREFIXES = ("meta-llama/", "google/gemma")  # gated on the Hub: known without asking it (offline)
TOKEN_SETTINGS_URL = "https://huggingface.co/settings/tokens"
_CHECKED: set[tuple[str, bool]] = set()  # (model, with a token) already found readable in this process


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded as asked; the message says why and what to do."""


class ModelAccessError(ModelLoadError):
    """The Hub will refuse this model to this machine; the message gives the steps."""


def hf_token() -> str | None:
    """The Hugging Face token from the environment or Colab's secret store (never printed)."""
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if tok:
        return tok
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore
            return userdata.get("HF_TOKEN")
        except Exception:
            return None
    return None


def hub_offline() -> bool:
    """True when the Hub must not be asked (``HF_HUB_OFFLINE`` set to 1/true/yes)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_hub_id(name: str) -> bool:
    """A Hub repository id (``owner/name``), not an embedded name nor a local folder."""
    return (bool(name) and not name.startswith(("embedded/", ".", "/", "~")) and name.count("/") == 1
            and not Path(name).exists())


def access_steps(name: str, why: str) -> str:
    """The message: why the model cannot be fetched, then the steps that fix it."""
    return (f"{name!r} {why}. Before anything is downloaded:\n"
            f"  1. Accept its licence (logged in to the Hub): https://huggingface.co/{name}\n"
            f"  2. Create a token with read access: {TOKEN_SETTINGS_URL}\n"
            "  3. On Colab: the key icon in the left bar > Add new secret, name HF_TOKEN, value the token, and turn "
            "on 'Notebook access'; elsewhere: export HF_TOKEN=<the token> (or run `huggingface-cli login`).\n"
            "Then run this cell again. Or set MODEL_NAME to a model that is not gated (e.g. "
            "'embedded/smollm2-135m-instruct', which needs no network).")


def _cached(name: str) -> bool:
    """The model's config.json is already in the local Hugging Face cache (no download needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(name, "config.json")
    except Exception:
        return False
    return isinstance(found, str)


def check_model_access(name: str, token: str | None = None, endpoint: str | None = None) -> None:
    """Raise :class:`ModelAccessError` with the steps when the Hub will refuse ``name`` (gated,
    licence not accepted, no token); return quietly otherwise (also when the Hub cannot be reached:
    the loader then says why). ``token`` defaults to :func:`hf_token`; ``endpoint`` to the Hub."""
    if not is_hub_id(name):
        return
    token = token or hf_token()
    if (name, bool(token)) in _CHECKED:
        return
    if hub_offline() or _cached(name):
        if not token and name.startswith(GATED_PREFIXES) and not _cached(name):
            raise ModelAccessError(access_steps(name, "is gated (a licence to accept) and no HF_TOKEN is set"))
        return
    _ask_hub(name, token, endpoint)
    _CHECKED.add((name, bool(token)))


def _ask_hub(name: str, token: str | None, endpoint: str | None) -> None:
    """Ask the Hub whether ``name`` is gated and, with a token, whether the token may read it."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        gated = api.model_info(name, timeout=15).gated
    except GatedRepoError:
        gated = "manual"
    except Exception:  # not found, private, no network (HTTP errors, httpx's own): the loader explains
        return
    if not gated:
        return
    if not token:
        raise ModelAccessError(access_steps(name, "is gated (a licence to accept) and no HF_TOKEN is set"))
    try:
        api.auth_check(name, token=token)
    except GatedRepoError:
        raise ModelAccessError(access_steps(name, "is gated and this HF_TOKEN's account has not been granted "
                                                  "access yet (licence not accepted, or still pending)")) from None
    except Exception:  # a refused token, no network: the loader explains
        return
