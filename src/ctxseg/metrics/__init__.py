"""ctxseg.metrics"""
