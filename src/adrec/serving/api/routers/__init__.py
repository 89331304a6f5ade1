"""One router per resource of the HTTP API."""

from adrec.serving.api.routers import (
    admin,
    ads,
    advertisers,
    campaigns,
    events,
    health,
    recommendations,
    reports,
    users,
)

ROUTERS = (
    health.router,
    recommendations.router,
    events.router,
    advertisers.router,
    campaigns.router,
    ads.router,
    users.router,
    reports.router,
    admin.router,
)
"""In the order the OpenAPI document lists them."""

__all__ = ["ROUTERS"]
