"""The API's routes, one module per part of the product; create_app includes ROUTERS in this order."""

from api.routes import evidence, model, operations, photos

ROUTERS = [photos.router, model.router, operations.router, evidence.router]
