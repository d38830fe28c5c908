"""Column names and vocabularies of the data contract (PLATFORM.md section 2), used everywhere.

One place for every name, so that the generator, ingestion, features, training and serving
cannot drift apart on a spelling.
"""

from typing import Final

# events
USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"
EVENT_TYPE: Final = "event_type"
TIMESTAMP: Final = "timestamp"
SESSION_ID: Final = "session_id"
PRICE: Final = "price"
QUANTITY: Final = "quantity"
DEVICE: Final = "device"
COUNTRY: Final = "country"

# products
TITLE: Final = "title"
DESCRIPTION: Final = "description"
CATEGORY: Final = "category"
BRAND: Final = "brand"
ATTRIBUTES: Final = "attributes"
CREATED_AT: Final = "created_at"
IN_STOCK: Final = "in_stock"

# users
SIGNUP_AT: Final = "signup_at"
AGE: Final = "age"
GENDER: Final = "gender"
REGION: Final = "region"
SKIN_TYPE: Final = "skin_type"
AVOID_ATTRIBUTES: Final = "avoid_attributes"

# event types the platform understands
VIEW: Final = "view"
CART: Final = "cart"
PURCHASE: Final = "purchase"
EVENT_TYPES: Final = (VIEW, CART, PURCHASE)

# separators inside string columns
CATEGORY_SEPARATOR: Final = " > "
ATTRIBUTE_SEPARATOR: Final = ";"

# the three tables of the contract, by the file stem they are read from
EVENTS: Final = "events"
PRODUCTS: Final = "products"
USERS: Final = "users"
TABLES: Final = (EVENTS, PRODUCTS, USERS)

# quarantine bookkeeping columns
REASON: Final = "reason"
DETAIL: Final = "detail"
SOURCE_FILE: Final = "source_file"
SOURCE_ROW: Final = "source_row"
