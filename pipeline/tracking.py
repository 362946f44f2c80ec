"""MLflow tracking and model registry: log a trained detector, move aliases, load a model.

One registered model per use case. :func:`log_trained_model` logs one run and registers a new
version pointed at by the alias ``challenger`` (and ``champion`` while the model has none);
:func:`move_alias` moves an alias and records why on the version; screening loads
``models:/<name>@champion`` with :func:`load_model` (:func:`data_kind` says whether a version reads
a table or images); :func:`log_run` records a screening or
promotion run beside the model's training run, :func:`add_to_run` adds to such a run later (verdicts),
:func:`tag_version` notes decisions on a version.
The tracking URI is MLflow's own
(``mlflow.set_tracking_uri`` or ``MLFLOW_TRACKING_URI``); :func:`tracking_uri` gives the embedded
default, a SQLite file beside an artifact folder.

Example
-------
>>> # mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
>>> # info = log_trained_model(det, cal, model_name="fraud", experiment="fraud", params={},
>>> #                          metrics={}, input_example=X.head())
>>> # resolve_model("fraud")  # ResolvedModel(name='fraud', version='1', alias='champion')
>>> # load_model("models:/fraud@champion").predict(X)
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing may try to reach the internet
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars only clutter batch logs

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from packaging.version import Version  # noqa: E402

import maskae  # noqa: E402
from maskae import MaskedAutoencoderDetector  # noqa: E402
from maskae.calibration import Calibration, SmallBatchWarning  # noqa: E402
from maskae.table_encoding import UnknownCategoryWarning  # noqa: E402
from pipeline.mlflow_model import (  # noqa: E402
    CALIBRATION_ARTIFACT, DETECTOR_ARTIFACT, SCHEMA_ARTIFACT, calibrated_scores)

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
CHAMPION, CHALLENGER = "champion", "challenger"
DATA_KIND_TAG, TABLE = "maskae.data", "table"  # a version's tag: what it reads, "table" or "images"
REQUEST_TAG = "maskae.request"  # a version's tag: the training request (a flow's task run) that registered it
# Pinned from this environment, so MLflow need not load the model in a subprocess to guess them.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scipy", "scikit-learn", "safetensors", "tqdm")
# PyPI's torch for Linux is the multi-GB CUDA build; with this index "torch==2.13.0" resolves to
# 2.13.0+cpu, the build maskae trains and is tested with (PyTorch's own instructions for CPU wheels).
TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


class ModelNotFoundError(LookupError):
    """A registered model, version or alias does not exist; the message names it."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered version as :func:`log_trained_model` left it."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]


class ResolvedModel(NamedTuple):
    """Which version a model reference points at now (``alias`` None when given by version)."""

    name: str
    version: str
    alias: str | None

    @property
    def uri(self) -> str:
        """The version's pinned URI: an alias moved mid-run cannot change what is loaded."""
        return f"models:/{self.name}/{self.version}"


def tracking_uri(workdir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded default ``sqlite:///<workdir>/mlflow.db``.

    With the default, experiments created here keep their artifacts under ``<workdir>/mlartifacts``.
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    return f"sqlite:///{workdir / 'mlflow.db'}"


def use_tracking(workdir: Path) -> str:
    """Point MLflow at :func:`tracking_uri` of ``workdir`` for this process; returns the URI."""
    uri = tracking_uri(workdir)
    mlflow.set_tracking_uri(uri)
    return uri


def _sqlite_folder(uri: str) -> Path:
    """The folder of a ``sqlite:///`` store's database (``sqlite:///rel.db`` is relative to here)."""
    return Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve().parent


def _experiment_id(client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created on first use. For a SQLite store its artifacts go to
    ``mlartifacts/`` beside the database: MLflow's own fallback is ``./mlruns`` under whatever the
    current directory happens to be."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location, uri = None, mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        folder = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        location = (_sqlite_folder(uri) / "mlartifacts" / folder).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _requirements() -> list[str]:
    # Public versions: the local "+cpu" is what TORCH_CPU_INDEX's wheels carry, not a version to pin.
    return [TORCH_CPU_INDEX, *(f"{name}=={Version(metadata.version(name)).public}" for name in REQUIREMENTS)]


@contextmanager
def _quiet_example() -> Iterator[None]:
    """Score the input example (here, and in MLflow's check of it) without warning: its rows are
    fitting's, whose rarer values fitting reported, and five rows are a small batch for any budget."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownCategoryWarning)
        warnings.simplefilter("ignore", SmallBatchWarning)
        yield


def log_trained_model(
    detector: MaskedAutoencoderDetector, calibration: Calibration, *, model_name: str, experiment: str,
    params: Mapping[str, Any], metrics: Mapping[str, float], input_example: pd.DataFrame | np.ndarray,
    artifacts: Mapping[str, Path] | None = None, schema: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None, request_id: str | None = None,
) -> ModelVersionInfo:
    """Log one training run and register its model as a new version of ``model_name``.

    Parameters
    ----------
    detector : MaskedAutoencoderDetector
        Fitted detector; saved as safetensors + JSON inside the model.
    calibration : Calibration
        Its calibration; travels with the model, and the version is tagged with its strategy,
        level and threshold.
    model_name, experiment : str
        Registered model (created on first use) and experiment of the run (likewise).
    params, metrics : mapping
        Logged to the run as they are.
    input_example : DataFrame or ndarray
        A few feature rows, or images (N x H x W x C ``uint8``): stored with the model, and with
        its output gives the signature.
    artifacts : mapping of str to Path, default=None
        Extra files or folders (plots, config) logged under the run folder named by the key.
    schema : mapping, default=None
        ``Schema.to_dict()`` of the training data: stored inside the model (the loaded pyfunc's
        ``unwrap_python_model().schema``) and as the run's ``schema.json``.
    tags : mapping, default=None
        Run tags (values as text), e.g. the data's fingerprint.
    request_id : str, default=None
        Names the request (a retried task's run id): the version is tagged with it when it is
        created, so that a retry finds it with :func:`registered_for` instead of registering another.

    Returns
    -------
    ModelVersionInfo
        The new version: ``challenger``, and ``champion`` too if the model had none.
    """
    client = MlflowClient()
    # Numbers are logged as double: the detector reads them as floats, and a column inferred as
    # long would reject the next batch that has a missing value in it (MLflow enforces the schema).
    example = input_example[:5]  # an image batch is an array, logged as a tensor of its dtype
    if isinstance(example, pd.DataFrame):
        example = example.astype({c: "float64" for c in example.select_dtypes("integer").columns})
    with _quiet_example():
        signature = mlflow.models.infer_signature(example, calibrated_scores(detector, calibration, example))
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=_experiment_id(client, experiment)) as run:
        detector_dir = detector.save(Path(tmp) / DETECTOR_ARTIFACT)
        calibration_file = Path(tmp) / "calibration.json"
        calibration_file.write_text(json.dumps(calibration.to_dict()), encoding="utf-8")
        model_artifacts = {DETECTOR_ARTIFACT: str(detector_dir), CALIBRATION_ARTIFACT: str(calibration_file)}
        if schema is not None:
            schema_file = Path(tmp) / "schema.json"
            schema_file.write_text(json.dumps(dict(schema), indent=2), encoding="utf-8")
            model_artifacts[SCHEMA_ARTIFACT] = str(schema_file)
            mlflow.log_artifact(str(schema_file))
        mlflow.set_tags({"maskae.run_type": "training", **{k: str(v) for k, v in (tags or {}).items()}})
        mlflow.log_params(dict(params))
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
        for key, path in (artifacts or {}).items():
            (mlflow.log_artifacts if Path(path).is_dir() else mlflow.log_artifact)(str(path), key)
        with _quiet_example():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),  # models-from-code: the file is copied, nothing pickled
                artifacts=model_artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                # The model carries the maskae library it was trained with, so it loads where maskae is
                # not installed (a serving image built from the model's requirements alone).
                code_paths=[str(Path(maskae.__file__).parent)],
            )
    threshold = calibration.threshold
    version_tags = {f"calibration.{key}": str(value) for key, value in {
        "strategy": calibration.strategy, "level": calibration.level,
        "threshold": "per batch" if threshold is None else threshold}.items()}
    version_tags[DATA_KIND_TAG] = (schema or {}).get("kind", TABLE)
    if request_id is not None:
        version_tags[REQUEST_TAG] = request_id
    # The tags are created with the version, in one call: a version is never without them.
    version = str(mlflow.register_model(info.model_uri, model_name, tags=version_tags).version)
    return ModelVersionInfo(model_name, version, run.info.run_id, _name_new_version(client, model_name, version))


def _name_new_version(client: MlflowClient, model_name: str, version: str) -> tuple[str, ...]:
    """Point ``challenger`` at a new version, and ``champion`` too when it is the model's first;
    returns the version's aliases. A later version finds champion missing only when someone
    removed it (or its version): it is not made champion untested, and a warning says how to set
    one. Repeatable: a retry after a failure part-way finishes the naming."""
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    champion = client.get_registered_model(model_name).aliases.get(CHAMPION)
    if champion is None and version == "1":  # MLflow numbers a model's versions from 1, never reusing one
        move_alias(model_name, CHAMPION, version, {"decision": "first version of the model"})
        champion = version
    elif champion is None:
        warnings.warn(f"{model_name!r} has no champion (its alias or its version was removed): version {version} is "
                      f"its challenger, not made champion untested; set one with `maskae promote --model "
                      f"{model_name} --version N`", UserWarning, stacklevel=2)
    elif str(champion) != version and (beyond := columns_beyond(model_name, version, str(champion))):
        warnings.warn(f"{model_name!r} version {version} reads column(s) {few(beyond)} that its champion, version "
                      f"{champion}, does not: a batch exported for the champion lacks them, so as champion it would "
                      f"fail those batches; register a model of other columns under a name of its own",
                      UserWarning, stacklevel=2)
    return (CHALLENGER, CHAMPION) if str(champion) == version else (CHALLENGER,)


def registered_for(model_name: str, request_id: str) -> ModelVersionInfo | None:
    """The version of ``model_name`` that an earlier try of request ``request_id`` registered, its
    naming (``challenger``, ``champion``) finished now; None when no try got that far."""
    client = MlflowClient()
    # By the tag alone (a task run's id has no quotes; MLflow's filter cannot escape a name's), then the name.
    found = [v for v in client.search_model_versions(f"tag.`{REQUEST_TAG}` = '{request_id}'") if v.name == model_name]
    if not found:
        return None
    first = min(found, key=lambda v: int(v.version))
    version = str(first.version)
    return ModelVersionInfo(model_name, version, first.run_id, _name_new_version(client, model_name, version))


def _check_store(model: str) -> None:
    """A SQLite store that does not exist holds no model: say so, where MLflow would create an
    empty store there (a mistyped path, or a command run from another folder) and then say that
    the model does not exist."""
    uri = mlflow.get_tracking_uri()
    path = uri.removeprefix("sqlite:///").split("?")[0]
    if uri.startswith("sqlite:///") and path != ":memory:" and not Path(path).exists():
        raise ModelNotFoundError(f"no model {model!r} here: no MLflow store at {path}; run the command in the folder "
                                 f"where `maskae train` ran, or set MLFLOW_TRACKING_URI to the store that holds it")


def _registered(client: MlflowClient, name: str, version: str | None = None):
    """The registered model ``name`` (and check ``version`` exists); ModelNotFoundError if not."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # a store that cannot be reached is not a missing model
        known = sorted(model.name for model in client.search_registered_models())
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        raise ModelNotFoundError(f"no registered model {name!r} at {mlflow.get_tracking_uri()}"
                                 + (f": did you mean {near[0]!r}?" if near else "")
                                 + f" (registered: {few(known) if known else 'none; train one first'})") from None
    try:
        if version is not None:
            client.get_model_version(name, version)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise ModelNotFoundError(f"registered model {name!r} has no version {version!r} (versions: "
                                 f"{few([str(v) for v in versions]) if versions else 'none'})") from None
    return model


def resolve_model(ref: str | ResolvedModel) -> ResolvedModel:
    """Resolve ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` (a ``models:/`` prefix is allowed); a
    ``ResolvedModel`` is returned as it is (a flow pins the version once, and keeps its alias).

    ``NAME`` alone means ``NAME@champion``. Raises :class:`ModelNotFoundError`, naming the model
    and alias or version, when either does not exist.
    """
    if isinstance(ref, ResolvedModel):
        return ref
    name, alias, version = ref.removeprefix("models:/"), CHAMPION, None
    if "@" in name:
        name, alias = name.split("@", 1)
    elif "/" in name:
        (name, version), alias = name.split("/", 1), None
    _check_store(ref)
    client = MlflowClient()
    model = _registered(client, name, version)
    if alias is None:  # as MLflow numbers it: "02" is version 2, which its aliases and tags name "2"
        return ResolvedModel(name, str(client.get_model_version(name, version).version), None)
    if alias not in model.aliases:
        known = ", ".join(f"{a} -> v{v}" for a, v in sorted(model.aliases.items())) or "none"
        way_out = f"; set champion by hand with `maskae promote --model {name} --version N`" if alias == CHAMPION else ""
        raise ModelNotFoundError(f"registered model {name!r} has no alias {alias!r} (aliases: {known}){way_out}")
    return ResolvedModel(name, str(model.aliases[alias]), alias)


def logged_schema(model: ResolvedModel) -> dict[str, Any] | None:
    """The data schema logged beside the version (its run's ``schema.json``), without loading the
    model; None for a version logged without one."""
    run_id = MlflowClient().get_model_version(model.name, model.version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="schema.json", dst_path=tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))


def few(names: list[str], shown: int = 10) -> str:
    """A list of names for a message, the first ``shown`` of them and how many more."""
    return str(names[:shown]) + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def columns_beyond(model_name: str, version: str, other: str) -> list[str]:
    """The feature columns ``version`` reads that ``other`` does not (from their logged schemas):
    a batch exported for ``other`` lacks them, so making ``version`` champion would fail it."""
    reads = [(logged_schema(resolve_model(f"{model_name}/{v}")) or {}).get("features", {}) for v in (version, other)]
    return [column for column in reads[0] if column not in reads[1]]


def data_kind(model: ResolvedModel) -> str:
    """What the version reads, ``"table"`` or ``"images"``, from its tag (versions registered before
    the tag existed read tables), without loading the model."""
    return MlflowClient().get_model_version(model.name, model.version).tags.get(DATA_KIND_TAG, TABLE)


def load_model(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a model as a pyfunc. A ``models:/`` URI is resolved first (a clear error when the model,
    its version or its alias is missing; an alias's version pinned); other URIs (``runs:/``,
    folders) go to MLflow as they are."""
    registered = uri.startswith("models:/")
    if registered:
        uri = resolve_model(uri).uri
    path = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        if not registered or error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # a registered version found missing here has lost its files
        tracked = mlflow.get_tracking_uri()
        where = (f"mlartifacts/ in {_sqlite_folder(tracked)}, beside the database" if tracked.startswith("sqlite:///")
                 else "its experiment's artifact location")
        raise ModelNotFoundError(f"{uri} is registered, but its files are not in the artifact store ({error.message}); "
                                 f"were the model's files ({where}) moved or deleted? Train it again, or restore "
                                 f"them") from error
    finally:
        # MLflow puts the model's copy of maskae (code_paths) first on the path for good. This
        # process has maskae imported already, and processes it starts (Dask's workers) must import
        # the same one; nor should the path grow with every model a long-running process loads.
        sys.path[:] = path


def move_alias(model_name: str, alias: str, version: str | int, reason: Mapping[str, Any]) -> str | None:
    """Point ``alias`` at ``version`` and record the decision as tags on that version.

    Tags ``<alias>.reason`` (``reason`` as JSON), ``<alias>.previous`` (the version it pointed at
    before, or ``none``) and ``<alias>.since`` (UTC time). Returns the previous version or None.
    """
    client, version = MlflowClient(), str(version)
    previous = _registered(client, model_name, version).aliases.get(alias)
    previous = None if previous is None else str(previous)
    client.set_registered_model_alias(model_name, alias, version)
    tags = {"reason": json.dumps(dict(reason), default=str, sort_keys=True),
            "previous": previous or "none", "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, f"{alias}.{key}", value)
    return previous


def tag_version(model_name: str, version: str | int, tags: Mapping[str, Any]) -> None:
    """Set tags (values as text) on a registered model version."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value))


def log_run(model: ResolvedModel, run_type: str, *, params: Mapping[str, Any], metrics: Mapping[str, float],
            tags: Mapping[str, Any] | None = None) -> str:
    """Log a finished screening or promotion run in the experiment of ``model``'s training run.

    Tagged ``maskae.run_type=<run_type>`` and with the model's name, version and alias; returns the run id.
    """
    client = MlflowClient()
    experiment_id = client.get_run(client.get_model_version(model.name, model.version).run_id).info.experiment_id
    all_tags = {"maskae.run_type": run_type, "model.name": model.name, "model.version": model.version,
                "model.alias": model.alias or "", **(tags or {})}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{run_type}-{model.name}-v{model.version}") as run:
        mlflow.set_tags({key: str(value) for key, value in all_tags.items()})
        mlflow.log_params(dict(params))
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
    return run.info.run_id


def mark_failed(run_id: str, error: BaseException) -> None:
    """Mark a run logged by :func:`log_run` as FAILED, tagged with the error: its output never appeared."""
    client = MlflowClient()
    client.set_tag(run_id, "maskae.failure", f"{type(error).__name__}: {error}"[:500])
    client.set_terminated(run_id, status="FAILED")


def add_to_run(run_id: str, *, metrics: Mapping[str, float], artifact: Path, artifact_path: str) -> None:
    """Log metrics and one file to an existing, possibly finished, run (e.g. verdicts on a screening run).

    A metric logged again keeps its earlier values in the run's history; the latest is the one shown.
    """
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.log_artifact(run_id, str(artifact), artifact_path)
