"""The Models page against a real registry: a registered model shows what matters, removal goes through the
confirm dialog, the import dialog refuses bad input at the field without queueing anything, and a good import
queues exactly one job (no consumer runs, so it stays queued)."""

from __future__ import annotations

from nicegui.testing import User
from sqlmodel import select

from app.db import session
from app.registry import list_models, register_folder, remove_model
from app.tables import Job
from jobs import status as st


def jobs_in(root) -> list[Job]:
    with session(root) as s:
        return list(s.exec(select(Job)).all())


async def test_empty_models_page(home, user: User):
    await user.open("/models")
    await user.should_see("No models registered yet. Import one, or set up the bundled model.")
    await user.should_see(marker="setup-bundled")


async def test_registered_model_shows_its_facts(home, user: User, bundled_model_dir):
    model = register_folder(home, bundled_model_dir, name="smol")
    await user.open("/models")
    await user.should_see("smol")
    await user.should_see("llama")
    await user.should_see("135M")
    await user.should_see(f"{model.context_len:,}")
    await user.should_see("Yes")  # chat template
    await user.should_see(str(bundled_model_dir))


async def test_remove_through_dialog(home, user: User, bundled_model_dir):
    model = register_folder(home, bundled_model_dir, name="smol")
    await user.open("/models")
    user.find(marker=f"remove-{model.id}").click()
    await user.should_see("Remove model smol?")
    await user.should_see("Only the registry entry goes; the folder stays where it is", retries=1)
    user.find(marker="confirm-remove").click()
    await user.should_see("Removed smol")
    await user.should_not_see(marker=f"model-row-{model.id}")
    assert list_models(home) == []
    assert (bundled_model_dir / "config.json").exists()  # not managed: the folder stays


async def test_remove_of_a_model_already_gone_says_so(home, user: User, bundled_model_dir):
    model = register_folder(home, bundled_model_dir, name="smol")
    await user.open("/models")
    user.find(marker=f"remove-{model.id}").click()
    remove_model(home, model.id)  # removed elsewhere (CLI) while the dialog is open
    user.find(marker="confirm-remove").click()
    await user.should_see(f"no model {model.id}")


async def test_import_bad_path_shows_error_and_queues_nothing(home, user: User, tmp_path):
    await user.open("/models")
    user.find(marker="import-open").click()
    user.find(marker="import-submit").click()
    await user.should_see("give a model folder or a .gguf file")  # empty path
    assert jobs_in(home) == []

    user.find(marker="import-path").type(str(tmp_path / "nowhere"))
    user.find(marker="import-submit").click()
    await user.should_see("does not exist")
    assert jobs_in(home) == []

    not_a_model = tmp_path / "empty-folder"
    not_a_model.mkdir()
    user.find(marker="import-path").clear().type(str(not_a_model))
    user.find(marker="import-submit").click()
    await user.should_see("Not an HF model folder: it has no config.json.")
    assert jobs_in(home) == []


async def test_import_taken_name_shows_error_at_name(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/models")
    user.find(marker="import-open").click()
    user.find(marker="import-path").type(str(bundled_model_dir))
    user.find(marker="import-name").type("smol")
    user.find(marker="import-submit").click()
    await user.should_see("A model named smol is already registered.")
    assert jobs_in(home) == []


async def test_import_good_folder_queues_one_job(home, user: User, bundled_model_dir):
    await user.open("/models")
    user.find(marker="import-open").click()
    user.find(marker="import-path").type(str(bundled_model_dir))
    user.find(marker="import-name").type("mine")
    user.find(marker="import-submit").click()
    await user.should_see("Import queued.")
    [job] = jobs_in(home)
    assert job.kind == "import_model" and job.status == st.QUEUED
    assert job.params == {"path": str(bundled_model_dir.resolve()), "name": "mine"}


async def test_set_up_bundled_queues_once(home, user: User):
    await user.open("/models")
    user.find(marker="setup-bundled").click()
    await user.should_see("Setting up the bundled model.")
    await user.should_not_see(marker="setup-bundled")
    [job] = jobs_in(home)
    assert job.params == {"bundled": True}
    await user.should_see(f"Setting up the bundled model (job #{job.id})…")
