"""placeholder"""
def to_onnx(model, sample_input, path):
    raise NotImplementedError
