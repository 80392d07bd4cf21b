import numpy as np

from faceproc.crop import CROP_SIZE, crop_face, similarity_transform, template
from faceproc.detect import nms, tile_origins


def test_similarity_recovers_known_transform(rng):
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_crop_puts_keypoints_on_the_template():
    # Mark 5 keypoints in a big image; after cropping they must sit on the template.
    img = np.zeros((600, 800, 3), np.uint8)
    tpl = template()
    kps = tpl * 2.3 + np.array([300.0, 150.0])  # a face 2.3x the crop size somewhere in the photo
    for x, y in kps:
        img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    crop = crop_face(img, (0, 0, 1, 1), kps)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    for x, y in tpl:
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_nms_and_tiles():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.4)
    assert keep.tolist() == [0, 2]
    assert tile_origins(500, 640, 96) == [0]
    o = tile_origins(2048, 640, 96)
    assert o[0] == 0 and o[-1] == 2048 - 640 and all(b - a <= 640 - 96 for a, b in zip(o, o[1:]))
