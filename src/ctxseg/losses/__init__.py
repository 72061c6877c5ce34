"""ctxseg.losses"""
