"""Benchmark: load + save through deephealth_deid against plain nibabel / pydicom.

Run on demand (not in CI):

    python benchmarks/bench_io.py [--repeat 3] [--slices 200] [--size 256]

Builds, in a temporary folder, a 256^3 int16 NIfTI (.nii.gz) and a 200-slice
256x256 MR DICOM series, then times, in the same process and interleaved:

- baseline: what a script would do with the plain libraries (nibabel load, get
  the array, save; pydicom dcmread + pixel_array per file, then new UIDs and
  save_as per file);
- ours: ``load_volume`` + ``save_volume`` (which also sorts slices by position,
  checks geometry, keeps headers, derives UIDs and writes atomically).

Prints the median time of each and the ratio ours / baseline (aim: <= 1.2).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

import deephealth_deid as dd


def make_nifti(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1200, size=(size, size, size), dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)


def make_series(folder: Path, slices: int, size: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "MR"
        ds.PatientName = "Bench^Mark"
        ds.PatientID = "BENCH"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-128.0, -128.0, -100.0 + k * 1.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = rng.integers(0, 1200, size=(size, size), dtype=np.int16).tobytes()
        ds.save_as(folder / f"IM{k:05d}.dcm", enforce_file_format=True)


def baseline_nifti(src: Path, dst: Path) -> None:
    img = nib.load(src)
    data = np.asanyarray(img.dataobj)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), dst)


def baseline_series(src: Path, dst: Path) -> None:
    dst.mkdir()
    datasets = [pydicom.dcmread(p) for p in sorted(src.iterdir())]
    arrays = [ds.pixel_array for ds in datasets]
    for ds, arr in zip(datasets, arrays, strict=True):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = arr.tobytes()
        ds.save_as(dst / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)


def ours(src: Path, dst: Path) -> None:
    dd.save_volume(dd.load_volume(src), dst)


def timed(func, src: Path, dst: Path) -> float:
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    t0 = time.perf_counter()
    func(src, dst)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_nifti(t / "vol.nii.gz", args.size)
        make_series(t / "series", args.slices, args.size)
        cases = [
            (
                f"NIfTI {args.size}^3 int16 .nii.gz",
                t / "vol.nii.gz",
                baseline_nifti,
                t / "b.nii.gz",
                t / "o.nii.gz",
            ),
            (
                f"DICOM series {args.slices} x {args.size}^2",
                t / "series",
                baseline_series,
                t / "b_dcm",
                t / "o_dcm",
            ),
        ]
        print(f"{'case':<34} {'baseline s':>10} {'ours s':>8} {'ratio':>6}")
        for name, src, base, bdst, odst in cases:
            tb, to = [], []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                tb.append(timed(base, src, bdst))
                to.append(timed(ours, src, odst))
            mb, mo = statistics.median(tb), statistics.median(to)
            print(f"{name:<34} {mb:>10.3f} {mo:>8.3f} {mo / mb:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
