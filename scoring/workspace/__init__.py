"""The researcher's pages: study list, study page, agreement dashboard."""
