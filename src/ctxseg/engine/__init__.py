"""ctxseg.engine"""
