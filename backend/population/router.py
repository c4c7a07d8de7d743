"""The population view over the JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend.accounts.deps import Conn, audit_overview
from backend.api.deps import ERRORS, ClinicianPrincipal
from backend.population import service
from backend.population.schemas import PopulationOut

router = APIRouter(tags=["population"])


@router.get("/population", response_model=PopulationOut, responses=ERRORS)
def population(request: Request, p: ClinicianPrincipal, conn: Conn) -> PopulationOut:
    """Every patient in your scope ranked by risk (open alerts, deviation from baseline,
    adherence), and the alert burden per team."""
    view = service.population(conn, user=p.user, tz=request.app.state.settings.timezone)
    audit_overview(request, p, conn, action="api population", detail=f"{len(view.patients)} patients",
                   patient_ids=[r.patient_id for r in view.patients])
    return PopulationOut.model_validate(view)
