#!/usr/bin/env python3
"""Bookinfo ``ratings`` service: star ratings per reviewer for a product id.

``SERVICE_VERSION`` selects Istio's fault-demo behaviours: ``v-faulty`` (50% 503),
``v-delayed`` (50% 7 s delay), ``v-unavailable`` (always 503), ``v-unhealthy`` (503 and
failing /health).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time

import common

_RATINGS_PATH = re.compile(r"^/ratings/([^/]*)/?$")
_VERSION = common.env_str("SERVICE_VERSION", "v1")
_DEFAULT_RATINGS: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}

_lock = threading.Lock()
_user_ratings: dict[int, dict[str, int]] = {}


def ratings_for(product_id: int) -> common.JsonObj:
    with _lock:
        ratings = dict(_user_ratings.get(product_id, _DEFAULT_RATINGS))
    return {"id": product_id, "ratings": ratings}


class RatingsHandler(common.BookinfoHandler):
    service_name = "ratings"

    def _product_id(self, path: str) -> int | None:
        match = _RATINGS_PATH.match(path)
        if match is None:
            self.send_json(404, {"error": "not found"})
            return None
        try:
            return int(match.group(1))
        except ValueError:
            self.send_json(400, {"error": "please provide numeric product ID"})
            return None

    def handle_get(self, path: str, query: str) -> None:
        if path == "/health":
            if _VERSION == "v-unhealthy":
                self.send_json(500, {"status": "Ratings is not healthy"})
            else:
                self.send_json(200, {"status": "Ratings is healthy"})
            return
        product_id = self._product_id(path)
        if product_id is None:
            return
        if _VERSION in ("v-unavailable", "v-unhealthy"):
            self.send_json(503, {"error": "Service unavailable"})
            return
        if _VERSION == "v-faulty" and random.random() <= 0.5:
            self.send_json(503, {"error": "Service unavailable"})
            return
        if _VERSION == "v-delayed" and random.random() <= 0.5:
            time.sleep(7)
        self.send_json(200, ratings_for(product_id))

    def handle_post(self, path: str, query: str, body: bytes) -> None:
        product_id = self._product_id(path)
        if product_id is None:
            return
        try:
            data = json.loads(body.decode("utf-8") or "{}")
            ratings = {str(k): int(v) for k, v in data.items()}
        except (ValueError, AttributeError, TypeError):
            self.send_json(400, {"error": "please provide valid ratings JSON"})
            return
        with _lock:
            _user_ratings[product_id] = ratings
        self.send_json(200, {"id": product_id, "ratings": ratings})


if __name__ == "__main__":
    common.serve(RatingsHandler)
