"""``/v1/admin``: model reloads and catalogue refreshes (admin keys)."""

from __future__ import annotations

from fastapi import APIRouter

from adrec.serving.api.deps import Admin, KnownQuery, State
from adrec.serving.api.errors import KEYED, NOT_FOUND
from adrec.serving.api.schemas import CatalogOut, QuarantinedOut, ReloadOut

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=KEYED, dependencies=[KnownQuery])


@router.post("/models/reload", responses=NOT_FOUND)
def reload_model(_key: Admin, state: State) -> ReloadOut:
    """Load the models folder's current model and swap it in without dropping requests; every other serving
    process of the store follows within ``sync_interval_s``."""
    model = state.reload_model()
    return ReloadOut(model_version=model.version, calibrated_on=model.calibrator.n)


@router.post("/catalog/refresh")
def refresh_catalog(_key: Admin, state: State) -> CatalogOut:
    """Re-read the ad library from the store now (every process also does within ``sync_interval_s`` of any write
    of campaigns or ads); lists the stored records left out as invalid."""
    state.refresh_catalog()
    catalog = state.pipeline.catalog
    return CatalogOut(
        ads=catalog.n_ads,
        campaigns=catalog.n_campaigns,
        quarantined=[QuarantinedOut(kind=k, id=i, error=e) for k, i, e in catalog.quarantined],
    )
