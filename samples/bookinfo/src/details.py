#!/usr/bin/env python3
"""Bookinfo ``details`` service: book details for a product id."""

from __future__ import annotations

import re

import common

_DETAILS_PATH = re.compile(r"^/details/([^/]*)/?$")


def book_details(book_id: int) -> common.JsonObj:
    return {
        "id": book_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


class DetailsHandler(common.BookinfoHandler):
    service_name = "details"

    def handle_get(self, path: str, query: str) -> None:
        if path == "/health":
            self.send_json(200, {"status": "Details is healthy"})
            return
        match = _DETAILS_PATH.match(path)
        if match is None:
            self.send_json(404, {"error": "not found"})
            return
        try:
            book_id = int(match.group(1))
        except ValueError:
            self.send_json(400, {"error": "please provide numeric product id"})
            return
        self.send_json(200, book_details(book_id))


if __name__ == "__main__":
    common.serve(DetailsHandler)
