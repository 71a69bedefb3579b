//! The executable the tests' pipelines run parse children with (a test
//! harness cannot be one: started again, it would run the tests).

fn main() {
    docpipe_ingest::parsing::sandbox::serve_if_child();
    eprintln!("docpipe-parse-sandbox: run by docpipe's tests as a parse child, not by hand");
    std::process::exit(2);
}
