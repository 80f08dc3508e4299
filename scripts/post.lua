-- wrk script: POST a JSON feature vector to /predict.
wrk.method = "POST"
wrk.path = "/predict"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"features":[5.1,3.5,1.4,0.2]}'
