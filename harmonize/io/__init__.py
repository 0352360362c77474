"""Input and output: storage URIs (local, s3://), archives, labels tables, run manifests."""
