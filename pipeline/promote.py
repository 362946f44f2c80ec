"""Promotion step: challenger against champion on labelled data; move ``champion`` only if the policy says so.

Both versions score the same labelled records (rows either model would quarantine, and rows with
an empty label, are left out), each through its own pyfunc, schema and calibration: AUROC, AUPRC
and the realised precision / recall / false-positive rate of each model's own calibrated flags
(the evaluation file taken as one batch). The policy: promote when the challenger's ``metric``
exceeds the champion's by more than ``margin`` and, when ``max_fpr`` is set, its realised FPR is at
most ``max_fpr``. The decision and the numbers are recorded as tags on both versions (the
challenger's ``promotion.*``, the champion's ``promotion.last_*``; a move also writes
``champion.reason`` / ``champion.previous``) and as an MLflow run. When challenger and champion are
one version, it is evaluated alone, so that a nightly job still learns of a bad labels file, and
its tags keep the promotion that made it champion.

The labelled records are a file, or the analysts' verdicts collected from screening run folders
(``verdicts_from``, :func:`pipeline.verdicts.labelled_records`); for an image model, a folder of
images whose subfolders name their kind (MVTec's ``test/``: ``good`` is normal, every other kind
a defect), each model reading it at its own size. Verdicts exist only for records
some model flagged, so metrics on them describe the flagged population, not the whole traffic: the
decision's reason and the ``promotion.evaluation_data`` tag say so.

Example
-------
>>> # decision = promote("fraud", "labelled/december.csv", "is_fraud", margin=0.01, max_fpr=0.02)
>>> # decision = promote("fraud", verdicts_from="maskae-runs/nightly")  # the analysts' verdicts
>>> # decision.decision, decision.reason, decision.challenger["auprc"], decision.champion["auprc"]
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.config import IMAGES
from pipeline.image_ingest import NORMAL_KIND
from pipeline.image_train import read_as_trained
from pipeline.ingest import MALFORMED_LINES, FileChangedError, SchemaError, read_table, validate
from pipeline.scoring import ScoringModel, anomaly_labels, feature_frame, label_metrics, load_scoring_model
from pipeline.sources import fingerprint
from pipeline.verdicts import VERDICT_LABEL, labelled_records

METRICS = ("auprc", "auroc")
MIN_ANOMALIES = 10  # the default fewest labelled anomalies a promotion may rest on
VERDICTS_CAVEAT = ("evaluated on analysts' verdicts, which exist only for flagged records: "
                   "biased toward the flagged population")


def registered_name(model_name: str) -> str:
    """``model_name``, if it names a registered model alone (promotion compares two of its aliases)."""
    if "@" in model_name or "/" in model_name:
        raise ValueError(f"promotion takes a registered model's name alone ({model_name.split('@')[0].split('/')[0]!r}, "
                         f"not {model_name!r}): it compares the model's @{tracking.CHALLENGER} with its "
                         f"@{tracking.CHAMPION}, or, by hand, makes the version given by --version champion")
    return model_name


def check_evidence(challenger: tracking.ResolvedModel, data_path: str | Path | None, label_column: str | None,
                   verdicts_from: str | Path | None) -> bool:
    """Refuse evidence of the kind the challenger cannot be compared on; True if it reads images.
    An image model is compared on a folder labelled by subfolder only; a table's needs a label column."""
    images = tracking.data_kind(challenger) == IMAGES
    if images and (verdicts_from is not None or not Path(data_path).is_dir() or label_column is not None):
        raise ValueError(f"{challenger.name!r} reads images: promote it on a folder of images labelled by subfolder "
                         f"({NORMAL_KIND!r} = normal), with no label column and not on verdicts")
    if not images and data_path is not None and label_column is None:
        raise ValueError(f"{challenger.name!r} reads tables: name the label column of {str(data_path)!r}")
    return images


@dataclass(frozen=True)
class PromotionDecision:
    """``decision`` is ``"promote"``, ``"keep"``, ``"no change"`` (challenger already champion) or
    ``"set"`` (champion set by hand: :func:`set_champion`)."""

    model_name: str
    decision: str
    reason: str
    challenger_version: str  # the version compared with champion; set by hand: the version named
    champion_version: str  # before the decision ("none" when there was none)
    metric: str
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    rows_evaluated: int = 0
    run_id: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"


def check_policy(metric: str, margin: float, max_fpr: float | None, min_anomalies: int) -> None:
    """ValueError for a policy setting out of its range (the command line checks before Prefect starts)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not -1 < margin < 1:
        raise ValueError(f"margin must be in (-1, 1), a difference of {metric}s, got {margin}")
    if max_fpr is not None and not 0 <= max_fpr <= 1:
        raise ValueError(f"max_fpr must be a rate in [0, 1], got {max_fpr}")
    if min_anomalies < 1:
        raise ValueError(f"min_anomalies must be at least 1, got {min_anomalies}")


def _policy(metric: str, margin: float, max_fpr: float | None, new: dict, old: dict) -> tuple[str, str]:
    gain = new[metric] - old[metric]
    compared = f"challenger {metric} {new[metric]:.4f} vs champion {old[metric]:.4f} (gain {gain:+.4f}"
    if new["recall"] == 0 < old["recall"]:  # its threshold (+inf, say: a calibration set too small) flags nothing
        return "keep", (f"{compared}) but its calibrated flags catch none of the labelled anomalies (recall 0, the "
                        f"champion's {old['recall']:.4f}): as champion it would flag nothing; check its calibration")
    if gain <= margin:
        return "keep", f"{compared}, not more than the margin {margin})"
    if max_fpr is not None and new["fpr"] > max_fpr:
        return "keep", f"{compared}) but its realised FPR {new['fpr']:.4f} exceeds max_fpr {max_fpr}"
    return "promote", f"{compared} > margin {margin})" + (
        f", realised FPR {new['fpr']:.4f} <= max_fpr {max_fpr}" if max_fpr is not None else "")


def set_champion(model_name: str, version: str, note: str = "") -> PromotionDecision:
    """Make ``version`` champion by hand (a rollback, or a champion after the alias was removed),
    recorded as a decision: the version's ``champion.*`` tags, the left version's
    ``champion.rolled_back``, and a promotion run. When challenger is the version champion leaves
    (a rolled-back promotion), challenger moves with champion, so that the next comparison does not
    promote it again: it says "no change" until a new version is trained."""
    registered_name(model_name)
    target, client = tracking.resolve_model(f"{model_name}/{version}"), MlflowClient()
    aliases = {name: str(v) for name, v in client.get_registered_model(model_name).aliases.items()}
    left, challenger = aliases.get(tracking.CHAMPION), aliases.get(tracking.CHALLENGER)
    if left == target.version:
        return PromotionDecision(model_name, "no change", f"version {left} is champion already", left, left, "")
    # A rollback is the emergency path: a champion whose files do not load would fail every night after.
    load_scoring_model(target, images=tracking.data_kind(target) == IMAGES)
    reason = f"champion set by hand to version {target.version}" + (f" (was {left})" if left else "") + (
        f": {note}" if note else "")
    if earlier := client.get_model_version(model_name, target.version).tags.get("champion.rolled_back"):
        back = json.loads(earlier)  # restoring a version rolled back once: say why it was
        reason += (f"; version {target.version} was rolled back to version {back['to']} before"
                   + (f" ({back['note']})" if back.get("note") else ""))
    if left is not None and (beyond := tracking.columns_beyond(model_name, target.version, left)):
        reason += (f"; version {target.version} reads column(s) {tracking.few(beyond)} that version {left} did not: a batch "
                   f"exported for version {left} without them will fail")
    if challenger is not None and challenger == left:
        reason += f"; challenger moved from version {left} with it, so that no comparison promotes it again"
    run_id = tracking.log_run(target, "promotion", params={"set_by_hand": True, "champion_version": left or "none"},
                              metrics={}, tags={"decision": "set", "reason": reason})
    record = {"decision": "set by hand", "note": note, "run_id": run_id}
    if left is not None:
        tracking.tag_version(model_name, left, {"champion.rolled_back": json.dumps(
            {"to": target.version, "note": note, "run_id": run_id}, sort_keys=True)})
    if challenger is not None and challenger == left:
        tracking.move_alias(model_name, tracking.CHALLENGER, target.version, record)
    # Champion last: a command stopped part-way finds the old champion still set, and a rerun finishes.
    tracking.move_alias(model_name, tracking.CHAMPION, target.version, record)
    return PromotionDecision(model_name, "set", reason, target.version, left or "none", "", run_id=run_id)


def _evaluate(models: list[ScoringModel], frame: pd.DataFrame, label_column: str,
              source: str) -> tuple[list[dict], int, int, str]:
    """Label metrics of each model on the labelled rows of ``frame`` (numbered 0..n-1) that every
    model can score, how many and how many anomalies among them, and a note on those left out;
    ``source`` names where the rows came from in errors."""
    if label_column not in frame.columns:
        raise SchemaError(f"label column {label_column!r} is not in {source}; it has {list(frame.columns)}")
    id_column = models[0].schema.id_column  # the models were trained on one table: one id column
    y, known = anomaly_labels(frame[label_column], frame[id_column] if id_column in frame.columns else None)
    with warnings.catch_warnings():  # extra columns (the labels among them) are expected here
        warnings.simplefilter("ignore")
        checked = [validate(frame, m.schema) for m in models]
    cleans = [c.clean for c in checked]
    rows = frame.index[known]
    for clean in cleans:
        rows = rows.intersection(clean.index)
    y = y[rows.to_numpy()]  # read_table and labelled_records number rows 0..n-1
    if not 0 < y.sum() < len(y):
        left_out = pd.concat([c.quarantined["quarantine_reason"] for c in checked])  # a row once, labelled ones
        reasons = left_out[~left_out.index.duplicated() & left_out.index.isin(frame.index[known])].value_counts()
        unscored = (f" ({int(known.sum()) - len(y):,} labelled records cannot be scored, most often because "
                    f"{reasons.index[0]})" if len(reasons) and len(y) < known.sum() else "")
        raise ValueError(f"promotion needs labelled anomalies and labelled normal records; the scoreable rows of "
                         f"{source} hold {int(y.sum())} anomalies among {len(y)}{unscored}")
    counted = f"; {int(y.sum()):,} labelled anomalies among {len(y):,} records"
    results = []
    for model, clean in zip(models, cleans):
        out = model.score(feature_frame(clean.loc[rows], model.schema))
        results.append(label_metrics(y, out["anomaly_score"].to_numpy(), out["flagged"].to_numpy()))
    read = len(frame) + len(frame.attrs.get(MALFORMED_LINES, ()))
    unlabelled = int((~known).sum())
    note = (f" ({len(y):,} of the {read:,} records read: {unlabelled:,} without a label, "
            f"{read - len(y) - unlabelled:,} that a model cannot score)" if len(y) < read else "")
    return results, len(y), int(y.sum()), counted + note


def _trained_on(versions: list[tracking.ResolvedModel], sha256: str | None) -> str:
    """A caveat when the evaluated file is one the versions were trained on (its hash, as their
    training runs record it): a version measured on its own training records looks better than it is."""
    client = MlflowClient()
    runs = [client.get_run(client.get_model_version(v.name, v.version).run_id) for v in versions] if sha256 else []
    trained = [v.version for v, run in zip(versions, runs) if run.data.params.get("data.sha256") == sha256]
    return (f"; caution: the file is the training data of version(s) {', '.join(trained)}, whose metrics on it are "
            f"optimistic: evaluate on records trained on by neither" if trained else "")


def _evaluate_images(models: list[ScoringModel], folder: Path) -> tuple[list[dict], int, int, str]:
    """Label metrics of each image model on ``folder``, labelled by kind (``good`` = normal), how many
    images and how many defective, and a note on those left out (quarantined)."""
    results, paths, unreadable = [], None, 0
    for model in models:
        read = read_as_trained(folder, model.schema)
        if paths is not None and read.paths != paths:
            raise FileChangedError(f"{str(folder)!r} changed while it was read; promote again once it is complete")
        paths, labels, unreadable = read.paths, read.labels, max(unreadable, len(read.quarantined))
        if not 0 < labels.sum() < len(labels):
            raise ValueError(f"promotion needs defective and good images: {str(folder)!r} holds {int(labels.sum())} "
                             f"defective among {len(labels)} (a subfolder named {NORMAL_KIND!r} holds the good ones)")
        out = model.score(read.images)
        results.append(label_metrics(labels, out["anomaly_score"].to_numpy(), out["flagged"].to_numpy()))
    note = (f" ({len(labels):,} of the {len(labels) + unreadable:,} images read: {unreadable:,} quarantined by "
            f"the image ingest)" if unreadable else "")
    defective = int(labels.sum())
    return results, len(labels), defective, f"; {defective:,} defective images among {len(labels):,}" + note


def promote(model_name: str, data_path: str | Path | None = None, label_column: str | None = None, *,
            verdicts_from: str | Path | None = None, metric: str = "auprc", margin: float = 0.0,
            max_fpr: float | None = None, min_anomalies: int = MIN_ANOMALIES) -> PromotionDecision:
    """Compare ``model_name@challenger`` with ``@champion`` on labelled records and apply the policy.

    Parameters
    ----------
    model_name : str
        The registered model; it needs both aliases.
    data_path : str or Path or None, default=None
        CSV or Parquet with the models' feature columns and ``label_column``; for an image model,
        a folder of images labelled by their subfolders (``good`` = normal, any other = defect).
    label_column : str or None, default=None
        With ``data_path``: 1 / true / yes = anomaly, 0 / false / no = normal, empty = unknown (left out).
    verdicts_from : str or Path or None, default=None
        Instead of ``data_path``: a folder of screening runs; their analysts' verdicts on flagged
        records are the labels (biased toward the flagged population, and the reason says so).
    metric : {"auprc", "auroc"}, default="auprc"
        What the challenger must improve.
    margin : float, default=0.0
        Required improvement: promote only when ``challenger - champion > margin``.
    max_fpr : float or None, default=None
        Upper bound on the challenger's realised false-positive rate at its calibrated flags.
    min_anomalies : int, default=10
        Fewest labelled anomalies (defective images) a promotion rests on: with fewer, a gain is
        kept as a finding, not acted on (one anomaly more or less moves AUPRC by tens of points).

    Returns
    -------
    PromotionDecision
    """
    check_policy(metric, margin, max_fpr, min_anomalies)
    registered_name(model_name)
    if (data_path is None) == (verdicts_from is None):
        raise ValueError("give labelled data (data_path) or verdicts_from, not both")
    new = tracking.resolve_model(f"{model_name}@{tracking.CHALLENGER}")
    old = tracking.resolve_model(f"{model_name}@{tracking.CHAMPION}")
    images = check_evidence(new, data_path, label_column, verdicts_from)
    if verdicts_from is not None:
        source, label_column = f"the verdicts under {str(verdicts_from)!r}", VERDICT_LABEL
        origin = {"verdicts_from": str(Path(verdicts_from).resolve())}
    else:
        source, origin = repr(str(data_path)), {"data.path": str(Path(data_path).resolve())}
        if Path(data_path).is_file():  # which file was evaluated, as training runs record theirs
            origin["data.sha256"] = fingerprint([Path(data_path)])["sha256"]
    params = {"metric": metric, "margin": margin, "max_fpr": max_fpr, "min_anomalies": min_anomalies, **origin,
              "label_column": label_column, "challenger_version": new.version, "champion_version": old.version}
    same = new.version == old.version
    models = [load_scoring_model(version, images=images) for version in ([new] if same else [new, old])]
    if images:
        results, rows, anomalies, note = _evaluate_images(models, Path(data_path))
    else:
        frame = (labelled_records(verdicts_from) if verdicts_from is not None
                 else read_table(data_path, text_columns=[c for m in models for c in m.schema.text_columns]))
        results, rows, anomalies, note = _evaluate(models, frame, label_column, source)
    if same:
        results = results * 2
        decision, reason = "no change", (f"challenger and champion are the same version (v{new.version}), "
                                         f"{metric} {results[0][metric]:.4f}")
    else:
        decision, reason = _policy(metric, margin, max_fpr, *results)
        if decision == "promote" and anomalies < min_anomalies:
            decision, reason = "keep", (f"{reason}, but it rests on {anomalies} labelled anomalies, fewer than "
                                        f"min_anomalies {min_anomalies}: too few to act on; label more records, "
                                        f"or lower min_anomalies knowingly")
    reason += note + (f"; {VERDICTS_CAVEAT}" if verdicts_from is not None else "") + _trained_on(
        [new] if same else [new, old], origin.get("data.sha256"))
    metrics = {f"{who}_{k}": v for who, r in zip(("challenger", "champion"), results) for k, v in r.items()}
    metrics["rows_evaluated"] = rows
    run_id = tracking.log_run(new, "promotion", params=params, metrics=metrics,
                              tags={"decision": decision, "reason": reason})
    record = {"decision": decision, "reason": reason, "run_id": run_id, "metric": metric, "margin": margin,
              "max_fpr": max_fpr, "min_anomalies": min_anomalies, "challenger": results[0], "champion": results[1]}
    evaluation_data = (f"verdicts ({VERDICTS_CAVEAT})" if verdicts_from is not None
                       else "labelled image folder" if images else "labelled file")
    if not same:  # the champion's own promotion record stays; its side of this comparison is last_*
        tracking.tag_version(model_name, new.version, {
            "promotion.decision": decision, "promotion.reason": reason, "promotion.run_id": run_id,
            "promotion.compared_with": old.version, "promotion.metrics": json.dumps(results[0], sort_keys=True),
            "promotion.evaluation_data": evaluation_data})
        tracking.tag_version(model_name, old.version, {
            "promotion.last_challenger": new.version, "promotion.last_decision": decision,
            "promotion.last_run_id": run_id, "promotion.last_metrics": json.dumps(results[1], sort_keys=True),
            "promotion.last_evaluation_data": evaluation_data})
    if decision == "promote":
        tracking.move_alias(model_name, tracking.CHAMPION, new.version, record)
    return PromotionDecision(model_name, decision, reason, new.version, old.version, metric,
                             results[0], results[1], rows, run_id)
