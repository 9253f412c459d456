#!/usr/bin/env python3
"""Bookinfo ``reviews`` service.

v1: no ratings (``ENABLE_RATINGS`` unset/false). v2/v3: ``ENABLE_RATINGS=true`` and the stars are
fetched from the ratings service and coloured ``STAR_COLOR`` (black for v2, red for v3).
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import common

_REVIEWS_PATH = re.compile(r"^/reviews/([^/]*)/?$")

SERVICE_VERSION = common.env_str("SERVICE_VERSION", "v1")
RATINGS_ENABLED = common.env_bool("ENABLE_RATINGS", False)
STAR_COLOR = common.env_str("STAR_COLOR", "black")
RATINGS_HOST = common.service_host("RATINGS_HOSTNAME", "ratings")
RATINGS_PORT = common.service_port("RATINGS_SERVICE_PORT", 9080)
# Like Istio's reviews: black stars (v2) wait 10 s for ratings, red stars (v3) 2.5 s.
RATINGS_TIMEOUT = 10.0 if STAR_COLOR == "black" else 2.5
POD_NAME = os.environ.get("HOSTNAME") or socket.gethostname()
CLUSTER_NAME = os.environ.get("CLUSTER_NAME") or "null"

REVIEWS: tuple[tuple[str, str], ...] = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


def fetch_ratings(product_id: int, headers: dict[str, str]) -> dict[str, int] | None:
    status, body = common.http_get_json(RATINGS_HOST, RATINGS_PORT, f"/ratings/{product_id}", headers, RATINGS_TIMEOUT)
    if status != 200 or not isinstance(body, dict):
        return None
    ratings = body.get("ratings")
    if not isinstance(ratings, dict):
        return None
    return {str(k): v for k, v in ratings.items() if isinstance(v, int)}


def build_reviews(product_id: int, headers: dict[str, str]) -> common.JsonObj:
    ratings = fetch_ratings(product_id, headers) if RATINGS_ENABLED else None
    reviews: list[dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if RATINGS_ENABLED:
            stars = ratings.get(reviewer) if ratings is not None else None
            if stars is None:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
            else:
                review["rating"] = {"stars": stars, "color": STAR_COLOR}
        reviews.append(review)
    return {
        "id": str(product_id),
        "podname": POD_NAME,
        "clustername": CLUSTER_NAME,
        "version": SERVICE_VERSION,
        "reviews": reviews,
    }


class ReviewsHandler(common.BookinfoHandler):
    service_name = "reviews"

    def handle_get(self, path: str, query: str) -> None:
        if path == "/health":
            self.send_json(200, {"status": "Reviews is healthy"})
            return
        match = _REVIEWS_PATH.match(path)
        if match is None:
            self.send_json(404, {"error": "not found"})
            return
        try:
            product_id = int(match.group(1))
        except ValueError:
            self.send_json(404, {"error": "please provide numeric product id"})
            return
        headers = common.forward_headers(self.headers)
        self.send_json(200, build_reviews(product_id, headers))


if __name__ == "__main__":
    common.serve(ReviewsHandler)
