"""Whatever bytes a client sends, decoding answers an image or an ImageError, never anything else."""

import random

import pytest

from edgewatch.daemon.imaging import ImageError, decode_image


def test_real_photo_decodes_at_reduced_scale_still_covering_the_input(photo_bytes: dict[str, bytes]) -> None:
    full, s1 = decode_image(photo_bytes["bus"], 10**8)
    small, s2 = decode_image(photo_bytes["bus"], 10**8, target=(416, 416))
    assert full.shape == (1080, 810, 3) and s1 == 1.0
    assert small.shape == (540, 405, 3) and s2 == 0.5  # 1/2 DCT scale: 540 rows still >= 416
    big, s3 = decode_image(photo_bytes["bus"], 10**8, target=(640, 640))
    assert big.shape == (1080, 810, 3) and s3 == 1.0  # halving would leave 540 < 640: full decode


def test_truncated_jpeg_is_refused_but_trailing_bytes_are_fine(photo_bytes: dict[str, bytes]) -> None:
    jpeg = photo_bytes["bus"]
    with pytest.raises(ImageError, match="truncated"):
        decode_image(jpeg[: len(jpeg) * 2 // 3], 10**8)
    img, _ = decode_image(jpeg + b"camera-metadata-after-EOI", 10**8)
    assert img.shape == (1080, 810, 3)


@pytest.mark.parametrize("photo", ["bus", "zidane", "astronaut", "coffee"])
def test_truncations_and_mutations_never_escape(photo_bytes: dict[str, bytes], photo: str) -> None:
    data = photo_bytes[photo]
    rng = random.Random(photo)
    cases = [data[:n] for n in (1, 2, 3, 4, 8, 16, 64, 300, len(data) // 3, len(data) - 2)]
    for _ in range(40):
        mutated = bytearray(data[: rng.randint(8, 4096)] if rng.random() < 0.5 else data)
        for _ in range(rng.randint(1, 20)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cases.append(bytes(mutated))
    for case in cases:
        try:
            img, _ = decode_image(case, 10**8, target=(416, 416))
        except ImageError as exc:
            assert str(exc)
        else:
            assert img.ndim == 3 and img.shape[2] == 3
