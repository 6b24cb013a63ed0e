"""Wrong implementations of lab 2 (solutions/conv.py) that the graded tests must catch.

Each edit breaks one exercise, and tests/test_conv.py must take points from that exercise only.
"""

from tests.course.mutation import WrongImplementation

WRONG = [
    WrongImplementation(
        name="conv2d flips its kernel (true convolution instead of cross-correlation)",
        exercise="2.4",
        module="conv",
        old="kernels = w.reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)",
        new="kernels = w.flip(-2, -1).reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)",
    ),
    WrongImplementation(
        name="conv1d 'same' padding puts the extra zero of an even kernel on the left",
        exercise="2.2",
        module="conv",
        old="left, right = total // 2, total - total // 2  # the odd zero goes on the right",
        new="left, right = total - total // 2, total // 2  # the odd zero goes on the left (wrong)",
    ),
    WrongImplementation(
        name="max_pool2d_backward assigns instead of accumulating (right only for non-overlapping windows)",
        exercise="2.6",
        module="conv",
        old="dx_pad.scatter_add_(2, flat_index, dout.reshape(N, C, -1))",
        new="dx_pad.scatter_(2, flat_index, dout.reshape(N, C, -1))",
    ),
    WrongImplementation(
        name="conv2d returns float32 for float64 input",
        exercise="2.4",
        module="conv",
        old="    return out.contiguous()  # (N, C_out, H_out, W_out), stored in that order\n",
        new="    return out.contiguous().float()  # wrong dtype\n",
        says="returned float32, expected float64 (the input's dtype)",
    ),
]
