"""The evidence store's record() arguments from the API's answers: the one place that knows both shapes."""

from __future__ import annotations

from api.schemas import Inspection, Item, ScreeningResult, Screenings


def inspection_fields(inspection: Inspection) -> dict:
    """record() keyword arguments from an api.service.inspect_photo answer."""
    return {"kind": "inspection", "verdict": inspection.verdict, "score": inspection.score,
            "thresholds": inspection.thresholds.model_dump(), "model_name": inspection.model.name,
            "model_version": inspection.model.version, "quality": inspection.quality.model_dump(),
            "product": inspection.product}


def screening_fields(result: ScreeningResult, screenings: Screenings) -> dict:
    """record() keyword arguments for one image of an api.service.screen_photos answer."""
    if result.error is not None or result.quality is None:
        raise ValueError(f"Screening image {result.index} was not scored ({result.error.code if result.error else 'no quality'}): "
                         "there is nothing to record.")
    return {"kind": "screening", "external_id": result.id, "verdict": result.verdict, "score": result.score,
            "thresholds": screenings.thresholds.model_dump(), "model_name": screenings.model.name,
            "model_version": screenings.model.version, "quality": result.quality.model_dump(),
            "product": result.product}


def item_photo_fields(photo: Inspection, item_id: str) -> dict:
    """record() keyword arguments for one photo of an item (api.items_service), kept under the item's id."""
    return {**inspection_fields(photo), "kind": "item_photo", "external_id": item_id}


def item_fields(item: Item, item_id: str) -> dict:
    """record() keyword arguments for the item's own verdict; `quality` carries why it was retaken."""
    quality = {"ok": item.reason is None, "reasons": [item.reason] if item.reason else [], "message": item.message,
               "combination": item.combination, "missing_sides": item.missing_sides, "photos": len(item.photos)}
    return {"kind": "item", "external_id": item_id, "verdict": item.verdict, "score": item.score,
            "thresholds": item.thresholds.model_dump(), "model_name": item.model.name,
            "model_version": item.model.version, "quality": quality}
