"""What the popularity model is and how it learns.

Importing this package is cheap: TensorFlow, scikit-learn and xgboost are
imported only inside the training modules. The feature contract the model is
trained on lives in :mod:`popbatch.core.features`, shared with the scorer.
"""
