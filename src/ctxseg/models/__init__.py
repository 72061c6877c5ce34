"""ctxseg.models"""
