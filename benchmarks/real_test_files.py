"""The real images the redaction benchmarks read (pydicom's and pydicom-data's test files).

A module of its own, without imports, so that ``run_presidio.py`` can use it in an
environment where deephealth_deid is not installed.
"""

#: Files with burned-in text (RG3_UNCR: a radiograph whose only lettering is its R marker).
FILES = (
    "US1_UNCR.dcm",
    "OBXXXX1A.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "color3d_jpeg_baseline.dcm",
    "RG3_UNCR.dcm",
)
#: A file without text: it must come out bit-identical.
TEXT_FREE = "MR_small.dcm"
