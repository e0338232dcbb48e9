"""Azure Functions app root (Python v2 programming model): registers the blueprints, nothing else."""

import azure.functions as func

from functions.api import bp as api_bp
from functions.archive import bp as archive_bp
from functions.broadcast import bp as broadcast_bp
from functions.dashboard import bp as dashboard_bp
from functions.predict import bp as predict_bp
from functions.promote import bp as promote_bp
from functions.retrain import bp as retrain_bp

app = func.FunctionApp()
app.register_functions(predict_bp)
app.register_functions(archive_bp)
app.register_functions(broadcast_bp)
app.register_functions(retrain_bp)
app.register_functions(promote_bp)
app.register_functions(api_bp)
app.register_functions(dashboard_bp)
