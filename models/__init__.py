"""What the popularity model is and how it learns.

Importing this package is cheap: TensorFlow, scikit-learn and xgboost are
imported only inside the training modules, so the scorer can read
:mod:`models.features` without them.
"""
