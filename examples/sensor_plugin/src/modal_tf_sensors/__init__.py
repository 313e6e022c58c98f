"""modal-tf-sensors: a third-party modal_tf plugin for multichannel sensor time series.

The tokenizer ``sensor_frames`` (``SensorFrameTokenizer``) is found by name through the
``modal_tf.tokenizers`` entry point once this distribution is installed. Importing the package
stays light: the Lightning DataModule lives in ``modal_tf_sensors.data`` and is imported only
by recipes that name it.
"""

from modal_tf_sensors.simulate import ACTIVITIES, CHANNELS, SAMPLE_RATE, activity_windows
from modal_tf_sensors.tokenizer import SensorFrameTokenizer

__all__ = ["ACTIVITIES", "CHANNELS", "SAMPLE_RATE", "SensorFrameTokenizer", "activity_windows"]
