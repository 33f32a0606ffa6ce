"""The API's routes, one module per part of the product; create_app includes ROUTERS in this order."""

from api.routes import evidence, items, model, operations, photos

ROUTERS = [photos.router, items.router, model.router, operations.router, evidence.router]
