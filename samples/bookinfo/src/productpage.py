#!/usr/bin/env python3
"""Bookinfo ``productpage`` service: the HTML front end plus the /api/v1/products JSON API.

Calls details (3 s timeout) and reviews (3 s timeout, tried twice, as Istio's productpage does).
A user who signs in through ``POST /login`` gets a ``session`` cookie; while signed in every
outbound call carries ``end-user: <username>``.
"""

from __future__ import annotations

import html
import re
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import common

DETAILS_HOST = common.service_host("DETAILS_HOSTNAME", "details")
DETAILS_PORT = common.service_port("DETAILS_SERVICE_PORT", 9080)
REVIEWS_HOST = common.service_host("REVIEWS_HOSTNAME", "reviews")
REVIEWS_PORT = common.service_port("REVIEWS_SERVICE_PORT", 9080)
RATINGS_HOST = common.service_host("RATINGS_HOSTNAME", "ratings")
RATINGS_PORT = common.service_port("RATINGS_SERVICE_PORT", 9080)
TIMEOUT = 3.0

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Sorry, product ratings are currently unavailable for this book."

PRODUCTS: list[common.JsonObj] = [
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his "
            "shortest and one of his most farcical comedies, with a major part of the humour coming "
            "from slapstick and mistaken identity, in addition to puns and word play."
        ),
    }
]

STATIC_FILES: dict[str, tuple[str, str]] = {
    "/static/bookinfo.css": (
        "text/css; charset=utf-8",
        "body { font-family: sans-serif; margin: 0 2em; }\n"
        ".navbar { background: #222; color: #eee; padding: .5em 1em; }\n"
        ".navbar a, .navbar button { color: #eee; }\n"
        "blockquote { border-left: 4px solid #ccc; margin: 1em 0; padding-left: 1em; }\n"
        ".glyphicon { font-size: 1.3em; font-style: normal; }\n"
        '.glyphicon-star:before { content: "\\2605"; }\n'
        '.glyphicon-star-empty:before { content: "\\2606"; }\n',
    ),
}

_PRODUCT_API = re.compile(r"^/api/v1/products/([^/]+)(?:/(reviews|ratings))?/?$")


# --- upstream calls -----------------------------------------------------------------------
def _status_or_500(status: int) -> int:
    return status if status else 500


def get_details(product_id: int, headers: dict[str, str]) -> tuple[int, Any]:
    status, body = common.http_get_json(DETAILS_HOST, DETAILS_PORT, f"/details/{product_id}", headers, TIMEOUT)
    if status == 200 and isinstance(body, dict):
        return 200, body
    return _status_or_500(status), {"error": DETAILS_UNAVAILABLE}


def get_reviews(product_id: int, headers: dict[str, str]) -> tuple[int, Any]:
    status = 0
    for _ in range(2):  # Istio's productpage retries reviews once (fault-injection demo relies on it)
        status, body = common.http_get_json(REVIEWS_HOST, REVIEWS_PORT, f"/reviews/{product_id}", headers, TIMEOUT)
        if status == 200 and isinstance(body, dict):
            return 200, body
    return _status_or_500(status), {"error": REVIEWS_UNAVAILABLE}


def get_ratings(product_id: int, headers: dict[str, str]) -> tuple[int, Any]:
    status, body = common.http_get_json(RATINGS_HOST, RATINGS_PORT, f"/ratings/{product_id}", headers, TIMEOUT)
    if status == 200 and isinstance(body, dict):
        return 200, body
    return _status_or_500(status), {"error": RATINGS_UNAVAILABLE}


# --- HTML ---------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_details(details: common.JsonObj) -> str:
    if "error" in details:
        return (
            '<h4 class="text-center text-primary">Error fetching product details!</h4>\n'
            f"<p>{_e(details['error'])}</p>\n"
        )
    rows = [
        ("Type", details.get("type")),
        ("Pages", details.get("pages")),
        ("Publisher", details.get("publisher")),
        ("Language", details.get("language")),
        ("ISBN-10", details.get("ISBN-10")),
        ("ISBN-13", details.get("ISBN-13")),
    ]
    items = "".join(f"<dt>{_e(k)}:</dt><dd>{_e(v)}</dd>\n" for k, v in rows)
    return f'<h4 class="text-center text-primary">Book Details</h4>\n<dl class="details">\n{items}</dl>\n'


def render_rating(rating: Any) -> str:
    if not isinstance(rating, dict):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int):
        stars = max(0, min(stars, 5))
        color = _e(rating.get("color", "black"))
        # Istio's markup (Bootstrap glyphicons), which Istio's own tests grep for.
        full = '<span class="glyphicon glyphicon-star"></span>\n' * stars
        empty = '<span class="glyphicon glyphicon-star-empty"></span>\n' * (5 - stars)
        return f'<font color="{color}">\n<!-- full stars: -->\n{full}<!-- empty stars: -->\n{empty}</font>\n'
    if "error" in rating:
        return f'<p><i class="rating-error">{_e(rating["error"])}</i></p>\n'
    return ""


def render_reviews(reviews: common.JsonObj) -> str:
    if "error" in reviews:
        return (
            '<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n'
            f"<p>{_e(reviews['error'])}</p>\n"
        )
    parts = ['<h4 class="text-center text-primary">Book Reviews</h4>\n']
    for review in reviews.get("reviews") or []:
        if not isinstance(review, dict):
            continue
        parts.append(
            "<blockquote>\n"
            f"<p>{_e(review.get('text', ''))}</p>\n"
            f"<small>{_e(review.get('reviewer', ''))}</small>\n"
            f"{render_rating(review.get('rating'))}"
            "</blockquote>\n"
        )
    served = f"<dl><dt>Reviews served by:</dt><dd><u>{_e(reviews.get('podname', 'unknown'))}</u>"
    clustername = reviews.get("clustername")
    if clustername and clustername != "null":
        served += f" on cluster <u>{_e(clustername)}</u>"
    if reviews.get("version"):
        served += f' (<span class="reviews-version">reviews-{_e(reviews["version"])}</span>)'
    parts.append(served + "</dd></dl>\n")
    return "".join(parts)


def render_user_bar(user: str | None) -> str:
    if user:
        return (
            f'<span class="user">Welcome {_e(user)}</span>\n'
            '<form method="post" action="/logout" style="display:inline">'
            '<button type="submit">Sign out</button></form>\n'
        )
    return (
        '<form method="post" action="/login" style="display:inline">\n'
        '<input type="text" name="username" placeholder="User Name">\n'
        '<input type="password" name="passwd" placeholder="Password">\n'
        '<button type="submit">Sign in</button></form>\n'
    )


def render_page(product: common.JsonObj, details: common.JsonObj, reviews: common.JsonObj, user: str | None) -> str:
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        "<title>Simple Bookstore App</title>\n"
        '<link rel="stylesheet" href="/static/bookinfo.css">\n</head>\n<body>\n'
        '<nav class="navbar"><a href="/">BookInfo Sample</a>\n'
        f"{render_user_bar(user)}</nav>\n"
        f'<h3 class="text-center text-primary">{_e(product["title"])}</h3>\n'
        f'<p class="summary">{product["descriptionHtml"]}</p>\n'
        f'<div class="details">\n{render_details(details)}</div>\n'
        f'<div class="reviews">\n{render_reviews(reviews)}</div>\n'
        "</body>\n</html>\n"
    )


INDEX_HTML = (
    '<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>Simple Bookstore App</title></head>\n'
    "<body>\n<h3>Hello! This is a simple bookstore application consisting of three services "
    "as shown below</h3>\n"
    "<p>Click on one of the links below to auto generate a request to the backend as a real user "
    "or a tester</p>\n"
    '<p><a href="/productpage?u=normal">Normal user</a></p>\n'
    '<p><a href="/productpage?u=test">Test user</a></p>\n'
    "</body>\n</html>\n"
)


# --- handler ------------------------------------------------------------------------------
def session_cookie(username: str) -> str:
    return f"session={quote(username, safe='')}; Path=/; HttpOnly; SameSite=Lax"


CLEAR_SESSION = "session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"


class ProductPageHandler(common.BookinfoHandler):
    service_name = "productpage"

    def current_user(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(raw)
        except CookieError:
            return None
        morsel = cookie.get("session")
        if morsel is None or not morsel.value:
            return None
        return unquote(morsel.value) or None

    def outbound_headers(self) -> dict[str, str]:
        # end-user is derived only from the session, never trusted from the client.
        headers = common.forward_headers(self.headers, include_end_user=False)
        user = self.current_user()
        if user:
            headers["end-user"] = user
        return headers

    def handle_get(self, path: str, query: str) -> None:
        if path == "/health":
            self.send_json(200, {"status": "Product page is healthy"})
        elif path in ("/", "/index.html"):
            self.send_html(200, INDEX_HTML)
        elif path == "/productpage":
            self.productpage()
        elif path == "/logout":
            self.send_redirect("/productpage", cookies=[CLEAR_SESSION])
        elif path == "/login":
            self.send_json(405, {"error": "method not allowed"})
        elif path.startswith("/static/"):
            static = STATIC_FILES.get(path)
            if static is None:
                self.send_body(404, b"Not Found\n", "text/plain; charset=utf-8")
            else:
                self.send_body(200, static[1].encode("utf-8"), static[0])
        elif path.rstrip("/") == "/api/v1/products":
            self.send_json(200, PRODUCTS)
        elif (match := _PRODUCT_API.match(path)) is not None:
            self.product_api(match.group(1), match.group(2))
        else:
            self.send_body(404, b"Not Found\n", "text/plain; charset=utf-8")

    def handle_post(self, path: str, query: str, body: bytes) -> None:
        if path == "/login":
            form = parse_qs(query)
            ctype = self.headers.get("Content-Type", "")
            if body and "multipart/" not in ctype:
                form.update(parse_qs(body.decode("utf-8", "replace")))
            user = (form.get("username") or [""])[0].strip()
            cookie = session_cookie(user) if user else CLEAR_SESSION
            self.send_redirect("/productpage", cookies=[cookie])
        elif path == "/logout":
            self.send_redirect("/productpage", cookies=[CLEAR_SESSION])
        else:
            self.send_json(405, {"error": "method not allowed"})

    def productpage(self) -> None:
        headers = self.outbound_headers()
        product = PRODUCTS[0]
        _, details = get_details(product["id"], headers)
        _, reviews = get_reviews(product["id"], headers)
        self.send_html(200, render_page(product, details, reviews, self.current_user()))

    def product_api(self, raw_id: str, what: str | None) -> None:
        try:
            product_id = int(raw_id)
        except ValueError:
            self.send_json(400, {"error": "please provide numeric product id"})
            return
        headers = self.outbound_headers()
        if what == "reviews":
            status, body = get_reviews(product_id, headers)
        elif what == "ratings":
            status, body = get_ratings(product_id, headers)
        else:
            status, body = get_details(product_id, headers)
        self.send_json(status, body)


if __name__ == "__main__":
    common.serve(ProductPageHandler)
