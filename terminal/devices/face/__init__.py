"""Face accounts on the customer camera: detection, embedding, quality, matching, liveness,
enrolment and payment.

The parts, each swappable (see ``types.py``):

- ``yunet.YuNetDetector`` (OpenCV's YuNet, shipped in ``assets/models/face``) and
  ``dlib_embedder.DlibEmbedder`` (dlib's 128-d ResNet, from the ``face`` extra), joined with the
  quality thresholds in ``pipeline.FacePipeline``;
- ``quality``: one face, size, sharpness, frontal pose, brightness, each with a reason;
- ``matcher.FaceMatcher``: vectorised 1:N search with a threshold and a margin over the
  second-best account; ``mask_name`` for the confirm button;
- ``liveness.LivenessCheck``: natural motion, parallax of a head turn (or a blink), no screen;
- ``enrolment.EnrolmentFlow``: frames in, guidance out, templates and consent at the end;
- ``accounts.FaceAccounts``: enrol, delete and sync with the backend and the encrypted cache;
- ``payment.FacePayment``: ``propose(frames)`` then ``confirm(session, proposal)``;
- ``fakes``: ``FakeFaceDetector`` and ``FakeFaceEmbedder``.

Importing this package loads no model: dlib is imported only when a ``DlibEmbedder`` is made.
"""
