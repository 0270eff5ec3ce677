fn main() {
    for crd in runctl::crd::all() {
        print!("{}", runctl::crd::to_yaml(&crd));
    }
}
