"""Publish a model folder (weights, tokenizer, the README.md model card) to the Hugging Face hub in one commit.

    python -m tinydistil export --model runs/t4/student/model --push-to-hub you/distilbert-t4

Checked before anything is sent: the folder is a model folder with its card, a token is there (`hf auth login`,
Colab's secret HF_TOKEN, or the HF_TOKEN variable), and the hub answers for it. The files then go up as one commit
(`upload_folder`): the repository shows all of them or none.
"""
from __future__ import annotations

from pathlib import Path

from .export import check_model_dir


def push_to_hub(model_dir, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload `model_dir` to the hub repository `repo_id` (created if missing); returns the commit URL.
    ValueError (one line) without a card, a token or the network."""
    from huggingface_hub import HfApi, get_token

    from ..hf import first_line

    try:
        folder = check_model_dir(model_dir)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if not (folder / "README.md").is_file():
        raise ValueError(f"{folder} has no README.md model card; tinydistil writes one with every model it saves "
                         "(tinydistil.card.write_model_card(run_folder) writes it for an older run)")
    if not repo_id or repo_id.count("/") != 1:
        raise ValueError(f"--push-to-hub {repo_id!r}: give a repository as user/name (or org/name)")
    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: run `hf auth login` (Colab: add the secret HF_TOKEN) and push again; "
                         "nothing was uploaded")
    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as e:  # offline, the hub down, a revoked token: nothing has been sent yet
        raise ValueError(f"cannot reach the Hugging Face hub with this token ({type(e).__name__}: {first_line(e)}); "
                         "nothing was uploaded") from None
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=["*.tmp*", ".lock"],
                                 commit_message=f"tinydistil: {Path(folder).resolve().parent.name} model with its card")
    except Exception as e:  # one commit: a failure leaves the repository as it was
        raise ValueError(f"the upload to {repo_id} failed ({type(e).__name__}: {first_line(e)}); the repository "
                         "holds none of the files of this push") from None
    return str(getattr(info, "commit_url", info))
