"""A real-photo benchmark set that needs no download: objects cut from CC0 / public-domain
photos, pasted onto real textures and blurred photo backgrounds, with exact boxes.

Why: VOC and COCO cannot be downloaded on offline machines, and the synthetic 64-px shapes
saturate the localisation metrics. This set is built from photos that install with the
package's dependencies, so ``sise benchmark`` can rank methods on real ImageNet networks
(``efficientnet_lite0``, ``efficientnet_lite2``) anywhere.

The objects (:data:`PHOTO_OBJECTS`; one ImageNet class each, chosen because both real models
recognise the cut-out on its own):

==============  =====  ============  =================================================
ImageNet class  index  source photo  cut-out
==============  =====  ============  =================================================
Egyptian cat    285    chelsea       the cat's face (an ellipse)
espresso        967    coffee        cup, saucer and spoon (two ellipses and a polygon)
space shuttle   812    astronaut     the shuttle model behind the astronaut (polygon)
moped           665    motorcycle    the motorcycle (polygon ∩ stereo foreground)
spotlight       818    motorcycle    its headlamp (ellipse ∩ stereo foreground)
tripod          872    camera        column, head and three legs (five polygons)
==============  =====  ============  =================================================

ImageNet has no "motorcycle" class; its motorcycles are filed under ``moped`` and ``motor
scooter`` (on the whole photo Lite0 gives moped 0.49, motor scooter 0.34; Lite2 motor scooter
0.19, moped 0.15); ``moped`` is used. Cut-outs that the models did not recognise once pasted (the Summer Palace tower as
``palace``, the Falcon 9 as ``missile``, the flag as ``flagpole``, the wheel as ``disk brake``)
were left out.

How an image is made (everything is drawn from ``numpy.random.default_rng([seed, i])``, so image
``i`` is byte-identical on every run and a larger ``n_images`` only appends images):

1. a background (:func:`~sise.eval.data.photos.render._background`): with probability 0.4 a
   random square crop of one of scikit-image's CC0 textures (brick, grass, gravel), tinted and
   slightly defocused (Gaussian σ ≤ 2.5 px); otherwise a crop of an object-free region of a photo (sky, lake, wood,
   out-of-focus leaves), blurred with σ = 3-8 px, never from the photo an object of the image
   comes from;
2. the image's object: the classes take turns (image ``i`` shows ``PHOTO_OBJECTS[i % 6]``).
   The cut-out's matte is its hand-measured outline (polygons and ellipses in the source
   photo's pixels, measured on gridded enlargements), for the motorcycle intersected with the
   foreground of the photo's ground-truth stereo disparity
   (:func:`~sise.eval.data.photos.objects.motorcycle_foreground`),
   feathered with a Gaussian (σ = 1 % of the object's longest side + 1 px) so that its edge
   blends like a soft matte. It is scaled so that the geometric mean of its sides is 55-80 % of
   the image side (45-60 % with a distractor), its longest side at most 95 %, flipped
   left-right half of the time, brightness × 0.9-1.1, and placed at a random position with its
   box inside the image;
3. with probability :data:`DISTRACTOR_PROBABILITY` a second object of another class, cut from
   another photo, 25-38 % of the image side (shrunk until it fits), placed so that no pixel of
   either object, feather included, touches the other's. The image then has two (image, class) pairs, each the other's
   distractor.

A box is the bounding box of the pasted object's alpha > 0.5, in image pixels, so it is exact
by construction (objects never overlap, so no object hides part of another or lies in its box). Files are written in
the PASCAL VOC 2007 layout (``VOC2007/JPEGImages``, ``Annotations``, ``ImageSets/Main/test.txt``)
with a ``classes.txt`` that lists the 1,000 ImageNet classes in index order, so the class index
of :class:`~sise.eval.data.voc.VOCDetection2007` is the ImageNet index. (Older torchvision
versions give two pairs of classes the same name, ``crane`` and ``maillot``; ``classes.txt``
then writes the second of each as ``"crane (517)"`` / ``"maillot (639)"`` because the reader
needs unique names; no object here uses them, and :class:`PhotoDataset` reports torchvision's
names.)

Per-model filter: a pair is kept only if the model it is built for is confident about it: the
softmax probability of the pair's class on the whole image (resized to the model's input, as the
benchmark feeds it) is at least :data:`MIN_PROBABILITY` = 0.25. A class at 0.25 holds at least
a quarter of the model's belief, so it is among its top 4; a top-1 rule would drop every
two-object image's second pair, and split classes (``Egyptian cat`` / ``tabby`` / ``tiger cat``,
``moped`` / ``motor scooter``) often have a top-1 below 0.5. The probabilities are cached per
model (name, input size, normalisation and a digest of the weights).

Sources and their licences (all install offline with scikit-image, scikit-learn and this
package; nothing is downloaded):

=========================  ==================================================  =============
photo                      origin                                              licence
=========================  ==================================================  =============
``chelsea`` (this package) "Chelsea the cat", Stefan van der Walt              CC0
``coffee`` (this package)  "Coffee cup", Rachel Michetti, Pikolo Espresso Bar  CC0
``astronaut`` (skimage)    Eileen Collins, NASA Great Images database          public domain
``camera`` (skimage)       the cameraman, Lav Varshney                         CC0
``motorcycle`` (skimage)   ``stereo_motorcycle`` left view and disparity,      none stated
                           Middlebury 2014 stereo data set [1]
``rocket`` (skimage)       DSCOVR launch on Falcon 9, SpaceX (sky only)        public domain
``brick`` (skimage)        CC0Textures "Bricks25"                              CC0
``grass`` (skimage)        DeviantArt linolafett "Grass 01"                    CC0
``gravel`` (skimage)       CC0Textures "Gravel04"                              CC0
``china`` (scikit-learn)   Summer Palace, Flickr danielbuechele (sky, lake)    CC BY 2.0
``flower`` (scikit-learn)  dahlia, Flickr vultilion (out-of-focus leaves)      CC BY 2.0
=========================  ==================================================  =============

scikit-image states the licence of each of its photos in its ``skimage.data`` docstrings, and
its policy is to ship only CC0 / public-domain images; for ``stereo_motorcycle`` the docstring
names no licence and cites [1], as we do here. The two scikit-learn photos (used only as blurred
backgrounds) are CC BY 2.0 (scikit-learn's ``datasets/images/README.txt``): images generated
from them are derivatives that keep this attribution.

[1] D. Scharstein, H. Hirschmüller, Y. Kitajima, G. Krathwohl, N. Nesic, X. Wang and
P. Westling. High-resolution stereo datasets with subpixel-accurate ground truth. GCPR 2014.

The modules: the objects and their source photos (:mod:`~sise.eval.data.photos.objects`), drawing
the images and writing the files (:mod:`~sise.eval.data.photos.render`), the generated set's
cache folder (:mod:`~sise.eval.data.photos.cache`), and the set read as one model's dataset
(:mod:`~sise.eval.data.photos.dataset`).
"""

from sise.eval.data.photos.cache import photo_set, set_digest
from sise.eval.data.photos.dataset import (
    MIN_PROBABILITY,
    PhotoDataset,
    class_probabilities,
    photo_dataset,
)
from sise.eval.data.photos.objects import PHOTO_OBJECTS, PhotoObject
from sise.eval.data.photos.render import (
    DISTRACTOR_PROBABILITY,
    PHOTO_SET,
    PhotoSetSpec,
    make_photo_voc,
)

__all__ = [
    "DISTRACTOR_PROBABILITY",
    "MIN_PROBABILITY",
    "PHOTO_OBJECTS",
    "PHOTO_SET",
    "PhotoDataset",
    "PhotoObject",
    "PhotoSetSpec",
    "class_probabilities",
    "make_photo_voc",
    "photo_dataset",
    "photo_set",
    "set_digest",
]
