"""A generated e-commerce shop with known ground truth, written in the platform's data contract.

Entry point: ``shop.generate.generate_shop``. Importing this package does no work.
"""
