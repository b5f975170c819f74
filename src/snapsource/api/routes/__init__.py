"""One router per resource: search, uploads, images, health, admin, the web page."""
