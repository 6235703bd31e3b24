"""What ``train --wait`` prints when a training ends, and ``models list --library``: the report of what a training
used and left out, and a library's trained models with their accuracy, coverage and default."""

from __future__ import annotations

from typing import Any

from engineshed.cli import output

LISTED = 20  # entities and skip reasons printed before "… and N more"


def report_lines(report: dict[str, Any] | None) -> list[str]:
    """The report as lines for people: used, skipped by reason, entities left with no usable identifier."""
    if report is None:
        return ["no training report (the model is not complete)"]
    used, entities = report.get("identifiersUsed"), report.get("entitiesUsed")
    lines = [(f"used: {_n(used)} identifier(s) of {_n(entities)} entit{'y' if entities == 1 else 'ies'}; "
              f"skipped: {report['identifiersSkipped']}")]
    for skip in report["skipped"][:LISTED]:
        shown = ", ".join(i["identifierId"] for i in skip["identifiers"][:5])
        more = skip["count"] - min(5, len(skip["identifiers"]))
        lines.append(f"  skipped {skip['count']} {skip['reason']}: {skip['message']}"
                     + (f" [{shown}{f' and {more} more' if more > 0 else ''}]" if shown else ""))
    if len(report["skipped"]) > LISTED:
        lines.append(f"  … and {len(report['skipped']) - LISTED} more reasons")
    count = report["entitiesWithoutIdentifiersCount"]
    if count:
        lines.append(f"entities with no usable identifier: {count} (not in the model; recognize never answers them)")
        for entity in report["entitiesWithoutIdentifiers"][:LISTED]:
            lines.append(f"  {entity['name']} ({entity['id']}): {entity['message']}")
        if count > min(LISTED, len(report["entitiesWithoutIdentifiers"])):
            lines.append(f"  … and {count - min(LISTED, len(report['entitiesWithoutIdentifiers']))} more")
    if not report.get("recorded"):
        lines.append("(this engine does not record the entities it used: entities it never read are not listed)")
    return lines


def _n(value: Any) -> str:
    return "?" if value is None else str(value)


def missing(report: dict[str, Any] | None) -> int:
    """How many entities the training left with no usable identifier."""
    return int(report["entitiesWithoutIdentifiersCount"]) if report else 0


def print_trained(model_id: str, job_id: str, report: dict[str, Any] | None, allow_missing: bool) -> int:
    """The end of ``train --wait`` for a complete job; the exit status (MISSING when an entity was left out,
    unless ``allow_missing``)."""
    lost = missing(report)
    output.note(f"trained: model {model_id} (job {job_id})" + (f", but {lost} entit{'y has' if lost == 1 else 'ies have'} "
                                                              "no usable identifier" if lost else ""))
    for line in report_lines(report):
        output.note(line)
    if lost and not allow_missing:
        output.fail(f"{lost} entit{'y' if lost == 1 else 'ies'} left out of the model: fix their identifiers (see above) "
                    "and train again, or pass --allow-missing to accept it")
        return output.MISSING
    return output.OK


def print_promotion(model: dict[str, Any] | None) -> None:
    """Whether the new model answers recognize for the library now, and the promotion rule's reason."""
    if not model:
        return
    reason = (model.get("promotion") or {}).get("reason") or ""
    if model.get("isDefault"):
        output.note("now the default model" + (f" ({reason})" if reason else ""))
    else:
        output.note(f"not the default: {reason}" if reason else "not the default")


def coverage(model: dict[str, Any]) -> str:
    """``entities/identifiers`` used, and how many entities were left out."""
    report = model.get("trainingReport")
    if not report:
        return ""
    text = f"{_n(report.get('entitiesUsed'))} entities / {_n(report.get('identifiersUsed'))} identifiers"
    if report["entitiesWithoutIdentifiersCount"]:
        text += f" ({report['entitiesWithoutIdentifiersCount']} entities left out)"
    return text


def models_table(library: dict[str, Any], models: list[dict[str, Any]]) -> None:
    output.table(f"models of {library['name']} ({len(models)})",
                 ["id", "engine", "status", "version", "accuracy", "coverage", "default", "created"],
                 [(m["id"], m["engineId"], m["trainStatus"], m["libraryVersion"],
                   "" if m.get("accuracy") is None else f"{m['accuracy']:.3f}", coverage(m),
                   "default" if m.get("isDefault") else "", m.get("createdDateTime")) for m in models])
