"""The REST API: CodeProject.AI-compatible routes grouped by area in Litestar controllers."""
