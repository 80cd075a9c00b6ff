"""Optional helpers with their own dependencies: hypothesis strategies, the digits models (scikit-learn), DenseNet."""
