"""Azure Functions app root (Python v2 programming model): registers the blueprints, nothing else."""

import azure.functions as func

from functions.archive import bp as archive_bp
from functions.predict import bp as predict_bp

app = func.FunctionApp()
app.register_functions(predict_bp)
app.register_functions(archive_bp)
