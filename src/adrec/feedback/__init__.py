"""The feedback loop: impressions, clicks and conversions ingested durably and idempotently."""

from adrec.feedback.ingest import FeedbackReport, RawFeedback, ReportedEvent, ingest_feedback

__all__ = ["FeedbackReport", "RawFeedback", "ReportedEvent", "ingest_feedback"]
