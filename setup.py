"""hcdp_ros: one ament_python package that installs hcdp_model, hcdp_ros and hcdp_training.

The trainer lives in the top-level `training/` folder but installs as `hcdp_training`, so no bare
`training` module lands in a shared ROS site-packages.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hcdp_ros"

training_packages = ["hcdp_training"] + [
    "hcdp_training." + p for p in find_packages(where="training")
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Temporally stable human-centric depth, normals and mask for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hcdp_model", "hcdp_model.*", "hcdp_ros", "hcdp_ros.*"])
    + training_packages,
    package_dir={"hcdp_training": "training"},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.py")),
        ("share/" + PACKAGE + "/launch/rviz", glob("launch/rviz/*.rviz")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        ("share/" + PACKAGE + "/configs", glob("training/configs/*.yaml")),
        ("share/" + PACKAGE + "/models/default", glob("data/models/default/*")),
    ],
    # torch is not pinned here: the README/CI command pins the CPU build (torch==2.13.0) and ROS
    # machines bring their own (e.g. the Jetson wheel).
    install_requires=[
        "numpy",
        "torch>=2.6",  # weights_only loading is unsafe before 2.6 (CVE-2025-32434)
        "safetensors>=0.4",
        "pyyaml",
        "opencv-python-headless",
        "tqdm",
        "rosbags>=0.10",
    ],
    extras_require={
        "training": ["anny", "moderngl", "scikit-image", "tensorboard", "OpenEXR"],
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "convert": ["tflite"],  # scripts/convert_selfie_prior.py (pure-Python .tflite reader)
        # development only: the photos' reference masks of `hcdp eval-real --fetch` (MediaPipe
        # selfie segmentation, Apache-2.0; the 0.10.14 wheel ships its model file, 1.2.3 does not).
        # It pulls jax and opencv-contrib-python: docs/evaluation.md installs it in its own venv.
        "real-eval": ["mediapipe==0.10.14"],
        "dev": [
            "pytest",
            "pytest-timeout",
            "hypothesis",
            "anny",
            "moderngl",
            "scikit-image",
            "tensorboard",
            "OpenEXR",
            "onnx",
            "onnxruntime",
            "onnxscript",
            # tests/test_flake8.py: setup.cfg's ament_flake8 configuration with the plugins that
            # ros-jazzy-ament-flake8 brings (docstrings, import order, builtins, comprehensions,
            # quotes), so CI without ROS finds what `colcon test` finds
            "flake8",
            "flake8-blind-except",
            "flake8-builtins",
            "flake8-class-newline",
            "flake8-comprehensions",
            "flake8-deprecated",
            "flake8-docstrings",
            "flake8-import-order",
            "flake8-quotes",
        ],
    },
    entry_points={
        "console_scripts": [
            "hcdp = hcdp_model.cli:main",
            "hcdp_node = hcdp_ros.node:main",
        ],
        # The sub-commands of `hcdp`, each registered by the package that implements it
        # (hcdp_model/commands.py). After a change here, re-run `pip install -e .`.
        "hcdp.commands": [
            "info = hcdp_model.commands:INFO",
            "export = hcdp_model.commands:EXPORT",
            "init-from = hcdp_model.commands:INIT_FROM",
            "synth = hcdp_training.commands:SYNTH",
            "make-sample-bag = hcdp_training.commands:MAKE_SAMPLE_BAG",
            "train = hcdp_training.commands:TRAIN",
            "eval = hcdp_training.commands:EVAL",
            "ablate = hcdp_training.commands:ABLATE",
            "bag = hcdp_ros.commands:BAG",
            "eval-real = hcdp_training.commands:EVAL_REAL",
        ],
    },
    zip_safe=True,
)
