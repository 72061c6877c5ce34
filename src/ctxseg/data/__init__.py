"""ctxseg.data"""
